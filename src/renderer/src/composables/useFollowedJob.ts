/**
 * A dialog that follows the job it started, through four phases: setup (its fields), running (the
 * job's record from the jobs store), then done (the result) or ended (cancelled or failed, with the
 * code and message). Cancel while running stops the job; hiding leaves it to the jobs panel.
 */
import { computed, ref, type Ref } from 'vue';
import { toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { useJobsStore, type JobRecord } from '../stores/jobs.ts';

export type FollowedPhase = 'setup' | 'running' | 'done' | 'ended';

export function useFollowedJob<T>() {
  const jobs = useJobsStore();
  const phase = ref<FollowedPhase>('setup');
  const jobId = ref<string | null>(null);
  const result = ref<T | null>(null) as Ref<T | null>;
  const error = ref<{ code: ApiErrorCode; message: string } | null>(null);
  const job = computed<JobRecord | null>(() => (jobId.value === null ? null : (jobs.find(jobId.value) ?? null)));

  /** Starts the job (`start` passes `onStarted` on to the jobs store) and follows it to its end. */
  function follow(start: (onStarted: (id: string) => void) => Promise<T>): void {
    phase.value = 'running';
    start((id) => {
      jobId.value = id;
    }).then(
      (value) => {
        result.value = value;
        phase.value = 'done';
      },
      (failure: unknown) => {
        const apiError = toApiError(failure);
        error.value = { code: apiError.code, message: apiError.message };
        phase.value = 'ended';
      },
    );
  }

  /** Asks main to stop the running job; false when there is none (the dialog's Cancel then closes it). */
  function cancel(): boolean {
    if (phase.value !== 'running') return false;
    if (jobId.value !== null) void jobs.cancel(jobId.value);
    return true;
  }

  /** The dialog goes away; the job goes on, shown in the jobs panel. */
  function leaveToPanel(): void {
    jobs.panelOpen = true;
  }

  return { phase, job, result, error, follow, cancel, leaveToPanel };
}
