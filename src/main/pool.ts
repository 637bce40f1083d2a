import { MessageChannel } from 'node:worker_threads';
import { sharedKeyStoreBuffer } from '../shared/qcow2/files/luks-key-cache.ts';
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { fromWireError } from './errors.ts';
import { isEndMessage, isProgressMessage, isWorkerOutcome, type ProgressMessage, type WorkerSettings, type WorkerTask } from './worker/protocol.ts';

export interface PoolOptions {
  /** The worker entry: src/main/worker/worker.ts, its built chunk, or a test worker. */
  workerFile: string;
  maxThreads?: number;
  /** Handed to every worker as it starts (workerData); without it a worker uses its defaults. */
  workerSettings?: Partial<WorkerSettings>;
  /** How long a cancelled job may take to notice its flag before its thread is terminated. */
  cancelGraceMs?: number;
}

export interface RunOptions {
  onProgress?: (progress: ProgressMessage) => void;
  /** Aborting asks the job to stop (flag first, thread termination after the grace period where allowed). */
  signal?: AbortSignal;
  /**
   * Whether a job that has not stopped by the end of the grace period may have its thread
   * terminated (default true). Not for a job that changes a disk: past its commit point it no
   * longer heeds the flag but finishes, since stopping there would leave the disk half changed
   * (refcounts stale, a snapshot gone yet the job reported cancelled); and a thread inside native
   * code (a key derivation) goes on holding the disk's locks after termination is asked for.
   */
  mayTerminate?: boolean;
}

export interface JobPool {
  /** The job's result, or a Qcow2Error with the engine's code (CANCELLED after a cancel). */
  run(kind: string, path: string, args: unknown, options?: RunOptions): Promise<unknown>;
  close(): Promise<void>;
}

const DEFAULT_CANCEL_GRACE_MS = 3000;
// The outcome and the progress travel on different channels; wait this long at most for the port's `end`.
const PORT_DRAIN_MS = 200;

export function createPool(options: PoolOptions): JobPool {
  const piscina = new Piscina({
    filename: options.workerFile,
    maxThreads: options.maxThreads ?? defaultThreads(),
    minThreads: 0,
    idleTimeout: 30_000,
    // One store of opened guest volume keys for every worker the pool starts (they end when idle).
    workerData: { ...options.workerSettings, volumeKeys: sharedKeyStoreBuffer() },
    // A thread that dies or is terminated must not keep its files open: their image locks would
    // keep the disk "in use" until Cowbell quits. (Piscina's default; stated because it matters.)
    trackUnmanagedFds: true,
  });
  // A worker that dies between tasks is replaced by piscina; nothing is waiting on it.
  piscina.on('error', (error: unknown) => console.error('cowbell: a pool worker failed between jobs:', error));
  const graceMs = options.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS;

  async function run(kind: string, path: string, args: unknown, runOptions: RunOptions = {}): Promise<unknown> {
    const { onProgress, signal, mayTerminate = true } = runOptions;
    if (signal?.aborted) throw cancelledError();

    const { port1: progressIn, port2: progressOut } = new MessageChannel();
    const cancelFlag = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
    const terminate = new AbortController();
    let graceTimer: NodeJS.Timeout | undefined;
    const onAbort = (): void => {
      Atomics.store(cancelFlag, 0, 1);
      if (mayTerminate) graceTimer = setTimeout(() => terminate.abort(), graceMs);
    };
    signal?.addEventListener('abort', onAbort, { once: true });

    let markEnded = (): void => {};
    const ended = new Promise<void>((resolve) => (markEnded = resolve));
    progressIn.on('message', (message: unknown) => {
      if (isProgressMessage(message)) onProgress?.({ stage: message.stage, done: message.done, total: message.total, unit: message.unit });
      else if (isEndMessage(message)) markEnded();
    });

    const task: WorkerTask = { kind, path, args, progressPort: progressOut, cancelFlag };
    try {
      const outcome: unknown = await piscina.run(task, { transferList: [progressOut], signal: terminate.signal });
      await Promise.race([ended, delay(PORT_DRAIN_MS)]);
      if (!isWorkerOutcome(outcome)) throw new Qcow2Error('INTERNAL', `The ${kind} job returned something unreadable`);
      if (!outcome.ok) throw fromWireError(outcome.error);
      return outcome.result;
    } catch (error) {
      if (error instanceof Qcow2Error) throw error;
      if (terminate.signal.aborted) {
        throw new Qcow2Error('CANCELLED', `Cancelled: the ${kind} job did not stop within ${graceMs} ms, so its thread was stopped`);
      }
      const detail = error instanceof Error ? error.message : String(error);
      throw new Qcow2Error('INTERNAL', `The worker running the ${kind} job stopped unexpectedly (${detail})`);
    } finally {
      clearTimeout(graceTimer);
      signal?.removeEventListener('abort', onAbort);
      progressIn.close();
    }
  }

  return {
    run,
    close: () => piscina.destroy(),
  };
}

function cancelledError(): Qcow2Error {
  return new Qcow2Error('CANCELLED', 'Cancelled before it started; the image was left as it was');
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function defaultThreads(): number {
  return Math.max(2, Math.min(4, availableParallelism()));
}
