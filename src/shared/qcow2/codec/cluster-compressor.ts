/**
 * Compresses batches of clusters for convert -c: on the calling thread, or spread over helper
 * threads that share the batch through SharedArrayBuffers. The API stays synchronous (the
 * engine's is): the caller takes a share of the clusters itself and then waits with
 * Atomics.wait, which Node allows on any thread.
 *
 * Batches are handed out by generation: each claim of a cluster is a compare-and-swap on
 * (generation, index), so a helper still finishing one batch can never take, or skip, a cluster
 * of the next. A helper that starts while a batch is under way joins it, so the caller starts on
 * the first batch at once instead of waiting the tens of milliseconds a thread takes to start.
 */
import type { Worker } from 'node:worker_threads';
import { assertCanCompress, compressClusterInto, type CompressionType } from './compression.ts';
import { Qcow2Error } from '../errors.ts';
import { awaitHelperStart, endHelperThread, HELPER_START_MS, HELPER_THREAD_NAMES, startHelperThread } from '../io/helper-threads.ts';

export interface ClusterCompressor {
  /**
   * Compresses clusters [0, count) of `input` (each `clusterBytes` long). Each result is the
   * compressed bytes, or null where compression saves nothing; results stay valid until the next call.
   */
  compress(input: Uint8Array, count: number): (Uint8Array | null)[];
  /**
   * Room for the next batch's `count` clusters side by side: input placed there is taken by
   * compress() without a copy (the threaded compressor's is the memory its helpers share).
   */
  inputBuffer(count: number): Uint8Array;
  /**
   * Threads that have compressed or stand ready to (the caller's own included): helpers that failed
   * to start are not counted. Helpers still starting are counted once they have: after close(),
   * which lets them start, the count is final.
   */
  threadsReady(): number;
  close(): void;
}

export function inlineCompressor(type: CompressionType, clusterBytes: number): ClusterCompressor {
  let output = new Uint8Array(0);
  let lent = new Uint8Array(0);
  return {
    inputBuffer(count) {
      if (lent.length < count * clusterBytes) lent = new Uint8Array(count * clusterBytes);
      return lent.subarray(0, count * clusterBytes);
    },
    compress(input, count) {
      if (output.length < count * clusterBytes) output = new Uint8Array(count * clusterBytes);
      const results: (Uint8Array | null)[] = [];
      for (let index = 0; index < count; index++) {
        const slot = output.subarray(index * clusterBytes, (index + 1) * clusterBytes);
        const length = compressClusterInto(type, input.subarray(index * clusterBytes, (index + 1) * clusterBytes), slot);
        results.push(length === 0 ? null : slot.subarray(0, length));
      }
      return results;
    },
    threadsReady: () => 1,
    close() {},
  };
}

/** Control words, in one shared Int32Array. */
export const CONTROL = {
  /** Bumped (and notified) to start a batch or to stop. */
  generation: 0,
  /** (generation & 0xfff) << 20 | next index to claim. */
  claim: 1,
  count: 2,
  done: 3,
  stop: 4,
  failed: 5,
  /** Helper threads that started (each adds one). */
  ready: 6,
  size: 7,
} as const;

const INDEX_BITS = 20;
const INDEX_MASK = (1 << INDEX_BITS) - 1;
/** A compressed length that says "not smaller: store plain". */
export const NOT_COMPRESSED = -1;
/** Not compressed yet. */
const PENDING = -2;
/** With no cluster finished for this long, the caller stops waiting for the helpers. */
const STALL_MS = 10_000;

export interface SharedBatch {
  control: Int32Array;
  input: Uint8Array;
  output: Uint8Array;
  lengths: Int32Array;
}

export interface CompressWorkerData {
  type: CompressionType;
  clusterBytes: number;
  control: SharedArrayBuffer;
  input: SharedArrayBuffer;
  output: SharedArrayBuffer;
  lengths: SharedArrayBuffer;
}

/**
 * Claims and compresses clusters of the current batch until none is left; used by the caller
 * and by each helper thread alike.
 */
export function workOnBatch(batch: SharedBatch, type: CompressionType, clusterBytes: number, generation: number): void {
  const tag = (generation & 0xfff) << INDEX_BITS;
  const count = Atomics.load(batch.control, CONTROL.count);
  for (;;) {
    const claim = Atomics.load(batch.control, CONTROL.claim);
    if ((claim & ~INDEX_MASK) !== tag) return;
    const index = claim & INDEX_MASK;
    if (index >= count) return;
    if (Atomics.compareExchange(batch.control, CONTROL.claim, claim, claim + 1) !== claim) continue;
    try {
      const length = compressClusterInto(type, batch.input.subarray(index * clusterBytes, (index + 1) * clusterBytes), batch.output.subarray(index * clusterBytes, (index + 1) * clusterBytes));
      batch.lengths[index] = length === 0 ? NOT_COMPRESSED : length;
    } catch {
      Atomics.store(batch.control, CONTROL.failed, 1);
    }
    Atomics.add(batch.control, CONTROL.done, 1);
    Atomics.notify(batch.control, CONTROL.done);
  }
}

function waitForHelpers(batch: SharedBatch, count: number, finishAlone: () => void): void {
  let lastDone = -1;
  let lastProgress = Date.now();
  for (let done = Atomics.load(batch.control, CONTROL.done); done < count; done = Atomics.load(batch.control, CONTROL.done)) {
    if (done !== lastDone) {
      lastDone = done;
      lastProgress = Date.now();
    } else if (Date.now() - lastProgress > STALL_MS) {
      finishAlone();
      return;
    }
    Atomics.wait(batch.control, CONTROL.done, done, 100);
  }
}

/**
 * Spreads each batch over `helpers` extra threads plus the caller. `maxClusters` bounds a batch;
 * `workerModule` is compress-worker.ts wherever a bundle put it; the first batch waits up to
 * `helperStartMs` for the helpers to start (tests on a loaded machine wait longer).
 */
export function threadedCompressor(
  type: CompressionType,
  clusterBytes: number,
  maxClusters: number,
  helpers: number,
  workerModule: URL | string = new URL('./compress-worker.ts', import.meta.url),
  helperStartMs = HELPER_START_MS,
): ClusterCompressor {
  // Said here, in words: a helper thread that cannot compress only reports that it failed.
  assertCanCompress(type);
  const shared = {
    control: new SharedArrayBuffer(CONTROL.size * 4),
    input: new SharedArrayBuffer(maxClusters * clusterBytes),
    output: new SharedArrayBuffer(maxClusters * clusterBytes),
    lengths: new SharedArrayBuffer(maxClusters * 4),
  };
  const batch: SharedBatch = {
    control: new Int32Array(shared.control),
    input: new Uint8Array(shared.input),
    output: new Uint8Array(shared.output),
    lengths: new Int32Array(shared.lengths),
  };
  const workerData: CompressWorkerData = { type, clusterBytes, ...shared };
  // A helper that cannot start (or dies) only means less help: the caller does every cluster it leaves.
  const workers: Worker[] = [];
  for (let index = 0; index < helpers; index++) {
    const worker = startHelperThread(workerModule, HELPER_THREAD_NAMES.compress, { workerData });
    if (worker === null) break;
    worker.unref();
    workers.push(worker);
  }
  let generation = 0;
  let closed = false;
  return {
    compress(input, count) {
      if (closed) throw new Qcow2Error('INTERNAL', 'compressor used after close');
      if (count > maxClusters || input.length < count * clusterBytes) throw new Qcow2Error('INTERNAL', 'compression batch too large');
      if (input.buffer !== batch.input.buffer || input.byteOffset !== 0) batch.input.set(input.subarray(0, count * clusterBytes));
      batch.lengths.fill(PENDING, 0, count);
      generation += 1;
      // No claim can be made while the count changes: a helper that read the new count with the
      // last batch's generation finds the claim word already past it.
      Atomics.store(batch.control, CONTROL.claim, ((generation & 0xfff) << INDEX_BITS) | INDEX_MASK);
      Atomics.store(batch.control, CONTROL.count, count);
      Atomics.store(batch.control, CONTROL.done, 0);
      Atomics.store(batch.control, CONTROL.claim, (generation & 0xfff) << INDEX_BITS);
      Atomics.store(batch.control, CONTROL.generation, generation);
      Atomics.notify(batch.control, CONTROL.generation);
      workOnBatch(batch, type, clusterBytes, generation);
      waitForHelpers(batch, count, () => {
        // A helper that stopped mid-cluster (it crashed): do what is still pending here. Compression
        // is deterministic, so a late helper writing the same cluster writes the same bytes.
        for (let index = 0; index < count; index++) {
          if (batch.lengths[index] !== PENDING) continue;
          const length = compressClusterInto(type, batch.input.subarray(index * clusterBytes, (index + 1) * clusterBytes), batch.output.subarray(index * clusterBytes, (index + 1) * clusterBytes));
          batch.lengths[index] = length === 0 ? NOT_COMPRESSED : length;
        }
      });
      if (Atomics.load(batch.control, CONTROL.failed) !== 0) throw new Qcow2Error('INTERNAL', 'compressing a cluster failed');
      const results: (Uint8Array | null)[] = [];
      for (let index = 0; index < count; index++) {
        const length = batch.lengths[index] ?? NOT_COMPRESSED;
        results.push(length === NOT_COMPRESSED ? null : batch.output.subarray(index * clusterBytes, index * clusterBytes + length));
      }
      return results;
    },
    inputBuffer(count) {
      if (count > maxClusters) throw new Qcow2Error('INTERNAL', 'compression batch too large');
      return batch.input.subarray(0, count * clusterBytes);
    },
    threadsReady: () => 1 + Atomics.load(batch.control, CONTROL.ready),
    close() {
      if (closed) return;
      closed = true;
      // A short job can end before its helpers have started: they are let start (and so end on
      // their own, below) rather than torn down mid-start. After a long job this costs nothing.
      awaitHelperStart(batch.control, CONTROL.ready, workers.length, helperStartMs);
      Atomics.store(batch.control, CONTROL.stop, 1);
      Atomics.add(batch.control, CONTROL.generation, 1);
      Atomics.notify(batch.control, CONTROL.generation);
      for (const worker of workers) endHelperThread(worker);
    },
  };
}
