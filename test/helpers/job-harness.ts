/**
 * Main's real job machinery for tests: the request handle, the job manager and its per-image
 * queue, a real worker pool — with the pool seam recorded (when each job actually ran, in
 * order) so tests can prove ordering and overlap from the order of events, not from timings.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { jobSchemas, type EventName, type EventPayloads, type JobEnd } from '../../src/shared/ipc/contract.ts';
import { createRequestHandle, type RequestHandle } from '../../src/main/handlers.ts';
import { createJobManager, type JobManager, type JobSpecs } from '../../src/main/jobs.ts';
import { createPool, type JobPool, type RunOptions } from '../../src/main/pool.ts';
import type { WorkerSettings } from '../../src/main/worker/protocol.ts';

export const realWorkerFile = fileURLToPath(new URL('../../src/main/worker/worker.ts', import.meta.url));
export const cowbellBin = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));

export interface PoolEvent {
  type: 'start' | 'end';
  kind: string;
  path: string;
  /** Which run (in order of starting) this event belongs to. */
  run: number;
}

export interface RecordingPool extends JobPool {
  log: PoolEvent[];
  /** Runs before a job reaches the real pool; a test may make it wait for something. */
  beforeRun?: (kind: string, path: string, run: number) => Promise<void>;
}

export function recordingPool(inner: JobPool): RecordingPool {
  let runs = 0;
  const pool: RecordingPool = {
    log: [],
    async run(kind: string, path: string, args: unknown, options?: RunOptions) {
      const run = runs++;
      pool.log.push({ type: 'start', kind, path, run });
      try {
        await pool.beforeRun?.(kind, path, run);
        return await inner.run(kind, path, args, options);
      } finally {
        pool.log.push({ type: 'end', kind, path, run });
      }
    },
    close: () => inner.close(),
  };
  return pool;
}

export interface Backend {
  handle: RequestHandle;
  jobs: JobManager;
  pool: RecordingPool;
  events: { event: EventName; payload: EventPayloads[EventName] }[];
  /** Starts a job the way the renderer does (request `job.start`); resolves with its id. */
  start(kind: string, path: string, args: unknown): Promise<string>;
  /** Resolves with the job's end event. */
  ended(jobId: string): Promise<JobEnd>;
  close(): Promise<void>;
}

export interface BackendOptions {
  workerFile?: string;
  maxThreads?: number;
  specs?: JobSpecs;
  cancelGraceMs?: number;
  workerSettings?: Partial<WorkerSettings>;
}

export function startBackend(options: BackendOptions = {}): Backend {
  const pool = recordingPool(
    createPool({ workerFile: options.workerFile ?? realWorkerFile, maxThreads: options.maxThreads ?? 2, cancelGraceMs: options.cancelGraceMs, workerSettings: options.workerSettings }),
  );
  const events: Backend['events'] = [];
  const ends = new Map<string, JobEnd>();
  const waiting = new Map<string, (end: JobEnd) => void>();
  const emit = <E extends EventName>(event: E, payload: EventPayloads[E]): void => {
    events.push({ event, payload });
    if (event !== 'job.end') return;
    const end = payload as JobEnd;
    ends.set(end.jobId, end);
    waiting.get(end.jobId)?.(end);
  };
  const jobs = createJobManager({ pool, emit, specs: options.specs, progressIntervalMs: 0 });
  const handle = createRequestHandle({ mode: 'browser', version: 'test', jobs, initialPaths: () => [], openDialog: async () => [] });
  return {
    handle,
    jobs,
    pool,
    events,
    async start(kind, path, args) {
      // Kinds outside the contract (a test worker's) go straight to the job manager.
      if (!Object.hasOwn(jobSchemas, kind)) return jobs.start(kind, path, args);
      const reply = await handle('job.start', { kind, path, args });
      if (!reply.ok) throw new Error(`job.start ${kind} refused: ${reply.error.message}`);
      return (reply.value as { jobId: string }).jobId;
    },
    ended(jobId) {
      const end = ends.get(jobId);
      if (end !== undefined) return Promise.resolve(end);
      return new Promise((resolve) => waiting.set(jobId, resolve));
    },
    async close() {
      jobs.cancelAll();
      await pool.close();
    },
  };
}

/** Intervals [start, end) of each run, by run number, from a pool log. */
export function runIntervals(log: readonly PoolEvent[]): Map<number, { kind: string; path: string; start: number; end: number }> {
  const intervals = new Map<number, { kind: string; path: string; start: number; end: number }>();
  log.forEach((event, position) => {
    const interval = intervals.get(event.run) ?? { kind: event.kind, path: event.path, start: -1, end: -1 };
    if (event.type === 'start') interval.start = position;
    else interval.end = position;
    intervals.set(event.run, interval);
  });
  return intervals;
}

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Whether the process or any of its descendants has `file` open (Linux /proc). */
export function processHasOpen(pid: number, file: string): boolean {
  const target = fs.realpathSync(file);
  try {
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === target) return true;
      } catch {
        // Closed while we looked.
      }
    }
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const children = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (children !== '' && children.split(/\s+/).some((child) => processHasOpen(Number(child), file))) return true;
    }
  } catch {
    // The process has gone.
  }
  return false;
}

/** Runs bin/cowbell in its own process (asynchronously, so the test's own event loop keeps going). */
export function runCowbell(args: string[], onSpawn?: (pid: number) => void): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(cowbellBin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    if (child.pid !== undefined) onSpawn?.(child.pid);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
