/**
 * A dialog that follows the job it started, through its phases: setup (its fields), unlock (asking
 * for an encrypted disk's passphrase), running (the job's record from the jobs store), then done
 * (the result) or ended (cancelled or failed, with the code and message). Cancel while running
 * stops the job, and otherwise closes the dialog; hiding closes it and leaves the job to the jobs panel.
 */
import { computed, ref, shallowRef, type Ref } from 'vue';
import { toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { useJobsStore, type JobRecord } from '../stores/jobs.ts';

export type FollowedPhase = 'setup' | 'unlock' | 'running' | 'done' | 'ended';

/** Why the passphrase is asked for: the disk is known to be encrypted, the job found it LOCKED, or the last one was wrong. */
export type UnlockReason = 'encrypted' | 'LOCKED' | 'BAD_PASSPHRASE';

/** The failures followUnlocked answers by asking for the passphrase: the job's `answeredCodes`, so they do not open the jobs panel. */
export const UNLOCK_CODES: readonly ApiErrorCode[] = ['LOCKED', 'BAD_PASSPHRASE'];

/** A job start that takes the passphrase the user just gave (undefined when none was asked for). */
export type UnlockedStart<T> = (passphrase: string | undefined, onStarted: (id: string) => void) => Promise<T>;

/** `close` closes the dialog (its parent's `close` event). */
export function useFollowedJob<T>(close: () => void = () => undefined) {
  const jobs = useJobsStore();
  const phase = ref<FollowedPhase>('setup');
  const jobId = ref<string | null>(null);
  // Set whole when the job ends, never changed within: no proxy for each of a long result's items (a files-diff of 100,000 differences).
  const result = shallowRef<T | null>(null) as Ref<T | null>;
  const error = ref<{ code: ApiErrorCode; message: string } | null>(null);
  const job = computed<JobRecord | null>(() => (jobId.value === null ? null : (jobs.find(jobId.value) ?? null)));
  /** Set while the Unlock dialog is up: why it asks. The passphrase itself is never kept here. */
  const unlockReason = ref<UnlockReason | null>(null);
  let answerUnlock: ((passphrase: string | null) => void) | null = null;

  const onStarted = (id: string): void => {
    jobId.value = id;
  };

  function succeed(value: T): void {
    result.value = value;
    phase.value = 'done';
  }

  function fail(failure: unknown): void {
    const apiError = toApiError(failure);
    error.value = { code: apiError.code, message: apiError.message };
    phase.value = 'ended';
  }

  /** Starts the job (`start` passes `onStarted` on to the jobs store) and follows it to its end. */
  function follow(start: (onStarted: (id: string) => void) => Promise<T>): void {
    phase.value = 'running';
    start(onStarted).then(succeed, fail);
  }

  function askPassphrase(reason: UnlockReason): Promise<string | null> {
    phase.value = 'unlock';
    unlockReason.value = reason;
    return new Promise((resolve) => {
      answerUnlock = resolve;
    });
  }

  /**
   * A job that may need the disk's passphrase: asked first when the disk is known to be encrypted,
   * and again whenever the job ends LOCKED or BAD_PASSPHRASE (nothing was written then), until it
   * runs or the user cancels the Unlock dialog (back to setup, nothing started). The passphrase
   * goes into that one job's arguments and is dropped; a retry asks for it again.
   */
  async function followUnlocked(start: UnlockedStart<T>, options: { encrypted: boolean }): Promise<void> {
    let reason: UnlockReason | null = options.encrypted ? 'encrypted' : null;
    for (;;) {
      let passphrase: string | undefined;
      if (reason !== null) {
        const given = await askPassphrase(reason);
        if (given === null) {
          phase.value = 'setup';
          return;
        }
        passphrase = given;
      }
      phase.value = 'running';
      jobId.value = null;
      try {
        const running = start(passphrase, onStarted);
        passphrase = undefined;
        succeed(await running);
        return;
      } catch (failure) {
        const code = toApiError(failure).code;
        if (code !== 'LOCKED' && code !== 'BAD_PASSPHRASE') {
          fail(failure);
          return;
        }
        reason = code;
      }
    }
  }

  /** The Unlock dialog's answer: a passphrase, or null when it was cancelled. */
  function answer(passphrase: string | null): void {
    const resolve = answerUnlock;
    answerUnlock = null;
    unlockReason.value = null;
    resolve?.(passphrase);
  }

  /** The dialog's Cancel: while the job runs, asks main to stop it (the dialog stays to say how it ended); otherwise closes the dialog. */
  function cancelOrClose(): void {
    if (phase.value !== 'running') {
      close();
      return;
    }
    if (jobId.value !== null) void jobs.cancel(jobId.value);
  }

  /** Hide: the dialog goes away; the job goes on, shown in the jobs panel. */
  function hide(): void {
    jobs.panelOpen = true;
    close();
  }

  /**
   * Escape: while the job runs, hides the dialog (a stray key press must not throw away a long
   * compact); otherwise as Cancel. Stopping a job takes the Cancel button, or the jobs panel.
   */
  function dismiss(): void {
    if (phase.value === 'running') hide();
    else cancelOrClose();
  }

  return { phase, job, result, error, unlockReason, follow, followUnlocked, answer, cancelOrClose, hide, dismiss };
}
