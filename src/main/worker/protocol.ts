/** What main and a pool worker say to each other: one task in, progress on a port, one outcome back. */
import type { MessagePort } from 'node:worker_threads';
import type { JobArgs, JobKind, JobResult, WireError } from '../../shared/ipc/contract.ts';
import type { JobContext } from '../../shared/qcow2/job-context.ts';

export interface WorkerTask {
  kind: string;
  path: string;
  args: unknown;
  /** Transferred to the worker; it posts PortMessage on it, ending with `{ type: 'end' }`. */
  progressPort: MessagePort;
  /** Over a SharedArrayBuffer: main sets [0] to 1 to ask the job to stop. */
  cancelFlag: Int32Array;
}

export interface ProgressMessage {
  stage: string;
  done: number;
  total: number;
  unit: 'bytes' | 'steps';
}

/** On the progress port: progress, then one `end` once no more progress will come. */
export type PortMessage = ({ type: 'progress' } & ProgressMessage) | { type: 'end' };

/** What every pool worker is started with (piscina's workerData): how its jobs may use the machine. */
export interface WorkerSettings {
  /** compress-worker.ts where the build put it; the engine finds the source file itself otherwise. */
  compressWorker?: string;
  /** early-verify-worker.ts where the build put it, as compressWorker. */
  earlyVerifyWorker?: string;
  /** Threads one compress job may use, its own included (1: no helper threads). */
  compressionThreads: number;
  /** Tests only (browser mode's COWBELL_TEST_TREE_GATE): the full tree job waits until this file exists. */
  treeGate?: string;
  /** The pool's store of opened guest volume keys, shared by all its workers (files/luks-key-cache.ts). */
  volumeKeys?: SharedArrayBuffer;
}

/** The settings from workerData, or the defaults where there are none (a worker started by hand). */
export function workerSettings(value: unknown, defaults: WorkerSettings): WorkerSettings {
  if (typeof value !== 'object' || value === null) return defaults;
  const data = value as Record<string, unknown>;
  const threads = data.compressionThreads;
  return {
    compressWorker: typeof data.compressWorker === 'string' ? data.compressWorker : defaults.compressWorker,
    earlyVerifyWorker: typeof data.earlyVerifyWorker === 'string' ? data.earlyVerifyWorker : defaults.earlyVerifyWorker,
    compressionThreads: typeof threads === 'number' && Number.isInteger(threads) && threads >= 1 ? threads : defaults.compressionThreads,
    ...(typeof data.treeGate === 'string' ? { treeGate: data.treeGate } : {}),
    ...(data.volumeKeys instanceof SharedArrayBuffer ? { volumeKeys: data.volumeKeys } : {}),
  };
}

export type WorkerOutcome = { ok: true; result: unknown } | { ok: false; error: WireError };

// `never` accepts a function of any argument type; the job manager validated args against the kind's schema.
export type JobFunction = (path: string, args: never, context: JobContext) => unknown;

export type JobTable = Readonly<Record<string, JobFunction>>;

/** The production table: every job kind of the contract, each mapped to its engine function. */
export type ContractJobTable = {
  readonly [K in JobKind]: (path: string, args: JobArgs<K>, context: JobContext) => JobResult<K> | Promise<JobResult<K>>;
};

export function isProgressMessage(value: unknown): value is { type: 'progress' } & ProgressMessage {
  if (typeof value !== 'object' || value === null) return false;
  const message = value as Record<string, unknown>;
  return (
    message.type === 'progress' &&
    typeof message.stage === 'string' &&
    typeof message.done === 'number' &&
    typeof message.total === 'number' &&
    (message.unit === 'bytes' || message.unit === 'steps')
  );
}

export function isEndMessage(value: unknown): value is { type: 'end' } {
  return typeof value === 'object' && value !== null && (value as { type?: unknown }).type === 'end';
}

export function isWorkerOutcome(value: unknown): value is WorkerOutcome {
  if (typeof value !== 'object' || value === null) return false;
  const outcome = value as Record<string, unknown>;
  if (outcome.ok === true) return 'result' in outcome;
  return outcome.ok === false && typeof outcome.error === 'object' && outcome.error !== null;
}
