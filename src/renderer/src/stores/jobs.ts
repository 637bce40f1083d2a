/**
 * Jobs as the user sees them: every job the UI starts goes through `run`, which resolves with the
 * job's result (or rejects with an ApiError) and, unless the job is a background read, lists it in
 * the jobs panel with its progress, rate and ETA, a cancel, and once ended what happened.
 */
import { defineStore } from 'pinia';
import { computed, ref } from 'vue';
import type { JobArgs, JobEnd, JobKind, JobProgress, JobResult, RunningJob } from '../../../shared/ipc/contract.ts';
import { on, request } from '../api.ts';
import { ApiError, toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { addSample, ratePerSecond, secondsLeft, type ProgressSample } from '../lib/job-rate.ts';

export type JobStatus = 'running' | 'done' | 'failed' | 'cancelled';

export interface JobRecord {
  id: string;
  kind: JobKind;
  path: string;
  /** What the job does, in words: "Delete snapshot “before upgrade”". */
  title: string;
  status: JobStatus;
  stage: string;
  done: number;
  total: number;
  unit: 'bytes' | 'steps';
  startedAt: number;
  endedAt: number | null;
  rate: number | null;
  secondsLeft: number | null;
  cancelling: boolean;
  /** What happened, once ended: a summary of the result, or the error in words. */
  outcome: string | null;
  error: { code: ApiErrorCode; message: string } | null;
  background: boolean;
}

export interface RunOptions<K extends JobKind> {
  title: string;
  /** Background reads (the tree, the charts, the map) stay out of the jobs panel. */
  background?: boolean;
  /** The result in words for the finished job. */
  describe?: (result: JobResult<K>) => string;
  /** Told the job's id once main has accepted it, so a dialog can follow its record. */
  onStarted?: (jobId: string) => void;
  /** Failures the dialog that started the job answers itself (a wrong passphrase: it asks again); they do not open the panel. */
  answeredCodes?: readonly ApiErrorCode[];
}

interface Waiter {
  resolve: (value: unknown) => void;
  reject: (error: ApiError) => void;
  describe?: (result: never) => string;
  answeredCodes?: readonly ApiErrorCode[];
}

/**
 * A job's end in words for a screen reader (the status bar's live regions read it out): failures
 * at once, the rest when the reader is idle. `serial` tells two equal texts apart.
 */
export interface JobAnnouncement {
  text: string;
  urgent: boolean;
  serial: number;
}

const MAX_FINISHED = 30;
/** A title as main takes one (JobStartRequest: 300 characters): a snapshot's name may alone be 1024. */
const MAX_TITLE = 300;

/** Cut whole characters (zod counts UTF-16 units, as String.length does), with an ellipsis. */
function fittedTitle(title: string): string {
  if (title.length <= MAX_TITLE) return title;
  let fitted = '';
  for (const character of title) {
    if (fitted.length + character.length > MAX_TITLE - 1) break;
    fitted += character;
  }
  return `${fitted}…`;
}
let refusedCount = 0;

function newRecord<K extends JobKind>(id: string, kind: K, path: string, options: RunOptions<K>): JobRecord {
  return {
    id,
    kind,
    path,
    title: options.title,
    status: 'running',
    stage: '',
    done: 0,
    total: 0,
    unit: 'steps',
    startedAt: performance.now(),
    endedAt: null,
    rate: null,
    secondsLeft: null,
    cancelling: false,
    outcome: null,
    error: null,
    background: options.background ?? false,
  };
}

export const useJobsStore = defineStore('jobs', () => {
  const jobs = ref<JobRecord[]>([]);
  const panelOpen = ref(false);
  const waiters = new Map<string, Waiter>();
  const samples = new Map<string, ProgressSample[]>();
  // A job can end before main's reply to job.start arrives; its end waits here for the id.
  const earlyEnds = new Map<string, JobEnd>();
  let listening = false;
  const announcement = ref<JobAnnouncement | null>(null);
  let announced = 0;

  function announce(job: JobRecord): void {
    if (job.background) return;
    const text =
      job.status === 'failed'
        ? `${job.title} failed: ${job.error?.message ?? 'unknown error'}`
        : job.status === 'cancelled'
          ? `${job.title}: cancelled; the disk is as it was.`
          : `${job.title}: ${job.outcome ?? 'done.'}`;
    announcement.value = { text, urgent: job.status === 'failed', serial: ++announced };
  }

  const visible = computed(() => jobs.value.filter((job) => !job.background));
  const running = computed(() => visible.value.filter((job) => job.status === 'running'));

  function find(id: string): JobRecord | undefined {
    return jobs.value.find((job) => job.id === id);
  }

  function listen(): void {
    if (listening) return;
    listening = true;
    on('job.progress', (payload) => onProgress(payload));
    on('job.end', (payload) => onEnd(payload));
  }

  function onProgress(progress: JobProgress): void {
    const job = find(progress.jobId);
    if (!job || job.status !== 'running') return;
    job.stage = progress.stage;
    job.done = progress.done;
    job.total = progress.total;
    job.unit = progress.unit;
    if (progress.unit === 'bytes') {
      const kept = addSample(samples.get(job.id) ?? [], { at: performance.now(), done: progress.done });
      samples.set(job.id, kept);
      job.rate = ratePerSecond(kept);
      job.secondsLeft = secondsLeft(progress.done, progress.total, job.rate);
    }
  }

  function onEnd(end: JobEnd): void {
    const job = find(end.jobId);
    const waiter = waiters.get(end.jobId);
    if (!job || !waiter) {
      earlyEnds.set(end.jobId, end);
      return;
    }
    waiters.delete(end.jobId);
    samples.delete(end.jobId);
    job.endedAt = performance.now();
    job.cancelling = false;
    job.secondsLeft = null;
    if (end.ok) {
      job.status = 'done';
      if (job.total > 0) job.done = job.total;
      try {
        job.outcome = waiter.describe ? waiter.describe(end.result as never) : 'Done.';
      } catch {
        job.outcome = 'Done.';
      }
      waiter.resolve(end.result);
    } else {
      const error = toApiError(end.error);
      job.status = error.code === 'CANCELLED' ? 'cancelled' : 'failed';
      job.error = { code: error.code, message: error.message };
      job.outcome = error.code === 'CANCELLED' ? 'Cancelled; the disk is as it was.' : null;
      if (job.status === 'failed' && !job.background && !(waiter.answeredCodes ?? []).includes(error.code)) panelOpen.value = true;
      waiter.reject(error);
    }
    announce(job);
    if (job.background) jobs.value = jobs.value.filter((candidate) => candidate.id !== job.id);
    trimFinished();
  }

  function trimFinished(): void {
    const finished = jobs.value.filter((job) => job.status !== 'running');
    if (finished.length <= MAX_FINISHED) return;
    const drop = new Set(finished.slice(0, finished.length - MAX_FINISHED).map((job) => job.id));
    jobs.value = jobs.value.filter((job) => !drop.has(job.id));
  }

  async function run<K extends JobKind>(kind: K, path: string, args: JobArgs<K>, options: RunOptions<K>): Promise<JobResult<K>> {
    listen();
    let jobId: string;
    try {
      const reply = await request('job.start', { kind, path, args, ...(options.background ? {} : { title: fittedTitle(options.title) }) });
      jobId = reply.jobId;
    } catch (error) {
      // Refused before it started (bad arguments, a lost link): the panel still says so.
      const apiError = toApiError(error);
      if (!options.background) {
        const refused: JobRecord = {
          ...newRecord(`refused-${++refusedCount}`, kind, path, options),
          status: 'failed',
          endedAt: performance.now(),
          error: { code: apiError.code, message: apiError.message },
        };
        jobs.value.push(refused);
        announce(refused);
        panelOpen.value = true;
        trimFinished();
      }
      throw apiError;
    }
    if (typeof jobId !== 'string') throw new ApiError('BAD_REPLY', 'The reply to job.start has no job id.');
    jobs.value.push(newRecord(jobId, kind, path, options));
    options.onStarted?.(jobId);
    const result = new Promise<unknown>((resolve, reject) => {
      waiters.set(jobId, { resolve, reject, describe: options.describe as ((result: never) => string) | undefined, answeredCodes: options.answeredCodes });
    });
    const early = earlyEnds.get(jobId);
    if (early) {
      earlyEnds.delete(jobId);
      onEnd(early);
    }
    return result as Promise<JobResult<K>>;
  }

  async function cancel(id: string): Promise<void> {
    const job = find(id);
    if (!job || job.status !== 'running') return;
    job.cancelling = true;
    try {
      await request('job.cancel', { jobId: id });
    } catch {
      job.cancelling = false;
    }
  }

  /**
   * The jobs main is already running, listed as if this window had started them: a page reloaded in
   * the middle of a compact still shows it, its progress, its end and its cancel.
   */
  async function adoptRunning(): Promise<void> {
    listen();
    let running: RunningJob[];
    try {
      running = await request('job.list', {});
    } catch {
      return;
    }
    for (const job of running) {
      // Untitled: another window's background reads (a tree, a chart), not for the panel.
      if (job.title === null || find(job.jobId) !== undefined) continue;
      jobs.value.push(newRecord(job.jobId, job.kind, job.path, { title: job.title }));
      // Nobody awaits its result: the end only updates the record.
      waiters.set(job.jobId, { resolve: () => {}, reject: () => {} });
      const early = earlyEnds.get(job.jobId);
      if (early) {
        earlyEnds.delete(job.jobId);
        onEnd(early);
      }
    }
  }

  function dismiss(id: string): void {
    jobs.value = jobs.value.filter((job) => job.id !== id || job.status === 'running');
  }

  function clearFinished(): void {
    jobs.value = jobs.value.filter((job) => job.status === 'running');
  }

  /** True while a job that changes `path` runs: other writes wait for it anyway, so the UI says so. */
  function busyWriting(path: string): boolean {
    return jobs.value.some((job) => job.path === path && job.status === 'running' && !job.background);
  }

  return { jobs, visible, running, panelOpen, announcement, find, run, cancel, dismiss, clearFinished, busyWriting, listen, adoptRunning };
});
