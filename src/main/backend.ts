import { createEventHub, type EventHub } from './events.ts';
import { createImageWatcher } from './image-watch.ts';
import { createRequestHandle, type HandlerSeam, type RequestHandle } from './handlers.ts';
import { createJobManager, type JobSpecs } from './jobs.ts';
import { createPool } from './pool.ts';
import type { WorkerSettings } from './worker/protocol.ts';

export interface BackendOptions extends Omit<HandlerSeam, 'jobs' | 'watcher'> {
  workerFile: string;
  /** compress-worker.ts's built chunk (Electron); browser mode runs the sources, where the engine finds it. */
  compressWorker?: string;
  /** early-verify-worker.ts's built chunk (Electron), as compressWorker. */
  earlyVerifyWorker?: string;
  maxThreads?: number;
  /** Tests only: the full tree job waits until this file exists (see worker/test-gate.ts). */
  treeGate?: string;
  /** Tests only: job kinds of their own, matched by their worker file. */
  jobSpecs?: JobSpecs;
}

/** Main's engine room, the same for Electron and browser mode: pool, per-image queue, jobs, handlers. */
export interface Backend {
  handle: RequestHandle;
  events: EventHub;
  /**
   * Cancels every job and waits for each to end before the threads go: a change past its commit
   * point finishes, so quitting never leaves a disk half changed.
   */
  close(): Promise<void>;
}

export function createBackend(options: BackendOptions): Backend {
  const events = createEventHub();
  const pool = createPool({
    workerFile: options.workerFile,
    maxThreads: options.maxThreads,
    workerSettings: poolWorkerSettings(options),
  });
  const jobs = createJobManager({ pool, emit: events.emit, specs: options.jobSpecs });
  const watcher = createImageWatcher({ emit: events.emit });
  const handle = createRequestHandle({
    mode: options.mode,
    version: options.version,
    jobs,
    watcher,
    initialPaths: options.initialPaths,
    openDialog: options.openDialog,
    setRecentDisks: options.setRecentDisks,
    revealPath: options.revealPath,
  });
  return {
    handle,
    events,
    async close() {
      watcher.close();
      jobs.cancelAll();
      await jobs.settled();
      await pool.close();
    },
  };
}

/** What the pool's workers are told beyond their defaults (pool.ts), or undefined where there is nothing. */
function poolWorkerSettings(options: BackendOptions): Partial<WorkerSettings> | undefined {
  const settings: Partial<WorkerSettings> = {
    ...(options.compressWorker === undefined ? {} : { compressWorker: options.compressWorker }),
    ...(options.earlyVerifyWorker === undefined ? {} : { earlyVerifyWorker: options.earlyVerifyWorker }),
    ...(options.treeGate === undefined ? {} : { treeGate: options.treeGate }),
  };
  return Object.keys(settings).length === 0 ? undefined : settings;
}
