/**
 * The final comparison of a rewrite (verify.ts), started early on a helper thread: while the copy
 * goes on, the helper reads back each run of whole data clusters already in the new file and the
 * source clusters it came from, and compares them. What it finds equal, the final comparison does
 * not read again; it still walks every state's tables in both images, opened afresh, and reads
 * every pair the helper did not confirm. So the helper can only save work, never vouch for a
 * mapping: a helper that cannot start, falls behind, fails to read or finds a difference leaves
 * those clusters to the final comparison, which reports a difference as before.
 *
 * Source clusters found all zeros, and so left out of the new image, are handed over too: the
 * helper reads them again and confirms they are zeros. So are clusters compressed on the way: the
 * helper reads the source cluster and the compressed bytes as the new image's entry names them,
 * decompresses those as a reader would, and compares. A compress then ends with little left to
 * decompress on one thread, which was most of its final comparison.
 *
 * The copy hands over runs through a ring in shared memory; the helper (early-verify-worker.ts)
 * takes them in order and moves a shared count forward past each run it found equal.
 */
import * as fs from 'node:fs';
import type { Worker } from 'node:worker_threads';
import { decompressCluster, type CompressionType } from '../codec/compression.ts';
import { compressedEntrySize } from '../format/entries.ts';
import { bytesEqual, isAllZero } from '../format/zeroes.ts';
import { ClusterPairs, CompressedPairs, type OUTPUT_UNALLOCATED, type OUTPUT_ZERO } from './cluster-pairs.ts';
import { RUN, RUN_FIELDS, RunQueue } from './run-queue.ts';
import { alignedBytes } from '../io/aligned-bytes.ts';
import type { BlockFile } from '../io/block-file.ts';
import { knownHoles, withinHole, type HoleList } from '../io/hole-aware-file.ts';
import { descriptorOf } from '../io/fail-stop-file.ts';
import { awaitHelperStart, endHelperThread, HELPER_START_MS, HELPER_THREAD_NAMES, startHelperThread } from '../io/helper-threads.ts';

/** Control words, in one shared Int32Array. */
export const EARLY_CONTROL = {
  /** Runs published by the copy. */
  head: 0,
  /** Runs the helper found equal, in publishing order (it stops at the first it cannot confirm). */
  confirmed: 1,
  /** Set by the copy: nothing more will be published. */
  end: 2,
  /** Set by the helper once it has stopped for good (after `end`, a difference or a failed read). */
  stopped: 3,
  /** Set by the helper once it runs. */
  ready: 4,
  /** Bumped (and notified) by the copy on every publish and at the end: the helper waits on it. */
  signal: 5,
  size: 6,
} as const;

/** Runs the ring holds: published but not yet compared. A copy that gets this far ahead keeps the rest for the final comparison. */
const RING_RUNS = 4096;
/** The longest run handed over. */
const RUN_MAX_BYTES = 8 * 1024 * 1024;
/** Bytes each side the helper reads at a time. */
export const EARLY_READ_BYTES = 1024 * 1024;
/** How long the end waits for a helper that has stopped moving before it leaves the rest to the final comparison. */
const STALL_MS = 5_000;
/**
 * Runs kept waiting for room in the ring at most: past that, the oldest are left to the final
 * comparison, so a helper far behind (a compress hands over one run per cluster) holds no more.
 */
const WAITING_MAX = 4 * RING_RUNS;

export interface EarlyVerifyWorkerData {
  control: SharedArrayBuffer;
  ring: SharedArrayBuffer;
  sourceDescriptor: number;
  outputDescriptor: number;
  clusterBytes: number;
  /** The new image's compression type, for compressed runs. */
  compressionType: CompressionType;
  /** The source's holes as known at its open (they read as zeros), or null. */
  sourceHoles: HoleList | null;
}

export interface EarlyVerifier {
  /** `clusters` whole data clusters of the source at `sourceHost` were copied as they are to `outputHost`. */
  add(sourceHost: number, outputHost: number, clusters: number): void;
  /** `clusters` data clusters of the source at `sourceHost` were found all zeros and left out, as zero (OUTPUT_ZERO) or unallocated (OUTPUT_UNALLOCATED) entries. */
  addZeros(sourceHost: number, output: typeof OUTPUT_ZERO | typeof OUTPUT_UNALLOCATED, clusters: number): void;
  /** The whole data cluster of the source at `sourceHost` was compressed to `compressedBytes` bytes at `outputHost`. */
  addCompressed(sourceHost: number, outputHost: number, compressedBytes: number): void;
  /**
   * The source's compressed data at `sourceOffset` (its entry's stored size `sourceSize`) was kept
   * as it is: its stream's first `streamBytes` bytes were written at `outputHost`.
   */
  addKeptCompressed(sourceOffset: number, sourceSize: number, outputHost: number, streamBytes: number): void;
  /** Everything before `writtenEnd` is in the output file: the runs that lie there go to the helper. */
  publish(writtenEnd: number): void;
  /**
   * The (source cluster, output) pairs the helper found equal so far, entered as ClusterPairs
   * records them (a compressed output with its entry's stored size as the tag).
   */
  readonly confirmed: ClusterPairs;
  /** The same for compressed source data kept as it was stored, as CompressedPairs records it. */
  readonly confirmedCompressed: CompressedPairs;
  /**
   * Publishes what is left (the whole output is written), waits for the helper to compare it, and
   * enters what it found equal in `confirmed`. A helper not started within `helperStartMs` (the
   * verifier's own, unless given) is given up on: the final comparison then reads everything.
   * Returns whether the helper ran and was waited for.
   */
  finish(helperStartMs?: number): boolean;
  close(): void;
}

/**
 * An early verifier comparing `source`'s data file with `output`, or null where it cannot run:
 * a file without a descriptor, or no helper thread (the final comparison then does it all).
 */
export function startEarlyVerifier(
  source: BlockFile,
  output: BlockFile,
  clusterBytes: number,
  compressionType: CompressionType = 0,
  workerModule: URL | string = new URL('./early-verify-worker.ts', import.meta.url),
  helperStartMs = HELPER_START_MS,
): EarlyVerifier | null {
  const sourceDescriptor = descriptorOf(source);
  const outputDescriptor = descriptorOf(output);
  if (sourceDescriptor === null || outputDescriptor === null) return null;
  const shared = { control: new SharedArrayBuffer(EARLY_CONTROL.size * 4), ring: new SharedArrayBuffer(RING_RUNS * RUN_FIELDS * 8) };
  // The source's holes read as zeros without a read here too (a disk preallocated with metadata).
  const workerData: EarlyVerifyWorkerData = { ...shared, sourceDescriptor, outputDescriptor, clusterBytes, compressionType, sourceHoles: knownHoles(source) };
  const worker = startHelperThread(workerModule, HELPER_THREAD_NAMES.earlyVerify, { workerData });
  if (worker === null) return null;
  worker.unref();
  return new SharedRingVerifier(worker, new Int32Array(shared.control), new Float64Array(shared.ring), new ClusterPairs(source.size(), clusterBytes), helperStartMs);
}

class SharedRingVerifier implements EarlyVerifier {
  /** Runs added and not yet published (their output may still be staged, or the ring full). */
  private readonly waiting = new RunQueue(WAITING_MAX);
  /**
   * Runs published that are entered in `confirmed` (the helper confirms them front first): the
   * ring slots of those after it, up to the head, are not written again until they are entered.
   */
  private entered = 0;
  private closed = false;
  private readonly worker: Worker;
  private readonly control: Int32Array;
  private readonly ring: Float64Array;
  private readonly clusterBytes: number;
  readonly confirmed: ClusterPairs;
  readonly confirmedCompressed = new CompressedPairs();

  private readonly helperStartMs: number;

  constructor(worker: Worker, control: Int32Array, ring: Float64Array, confirmed: ClusterPairs, helperStartMs: number) {
    this.helperStartMs = helperStartMs;
    this.worker = worker;
    this.control = control;
    this.ring = ring;
    this.confirmed = confirmed;
    this.clusterBytes = confirmed.clusterBytes;
  }

  add(sourceHost: number, outputHost: number, clusters: number): void {
    this.addRun(sourceHost, outputHost, clusters);
  }

  addZeros(sourceHost: number, output: typeof OUTPUT_ZERO | typeof OUTPUT_UNALLOCATED, clusters: number): void {
    this.addRun(sourceHost, output, clusters);
  }

  addCompressed(sourceHost: number, outputHost: number, compressedBytes: number): void {
    // What the entry will name, to the end of its last sector (the next cluster's data may fill that sector's rest).
    const tag = compressedEntrySize(outputHost, compressedBytes);
    this.waiting.push(sourceHost, outputHost, 1, tag, outputHost + tag);
  }

  addKeptCompressed(sourceOffset: number, sourceSize: number, outputHost: number, streamBytes: number): void {
    const tag = compressedEntrySize(outputHost, streamBytes);
    this.waiting.push(sourceOffset, outputHost, 1, tag, outputHost + tag, sourceSize, streamBytes);
  }

  /** A run (`output` a host offset, or below zero a form without data), joined to the last one where it continues it. */
  private addRun(sourceHost: number, output: number, clusters: number): void {
    const waiting = this.waiting;
    const last = waiting.length - 1;
    const bytes = clusters * this.clusterBytes;
    // Runs that continue each other on both sides are one run (fewer, longer reads), up to a
    // length that still hands the helper work as the copy goes.
    if (last >= 0 && waiting.get(last, RUN.tag) === 0) {
      const lastBytes = waiting.get(last, RUN.clusters) * this.clusterBytes;
      const lastOutput = waiting.get(last, RUN.outputHost);
      const continues = lastBytes + bytes <= RUN_MAX_BYTES && waiting.get(last, RUN.sourceHost) + lastBytes === sourceHost && (output < 0 ? lastOutput === output : lastOutput >= 0 && lastOutput + lastBytes === output);
      if (continues) {
        waiting.set(last, RUN.clusters, waiting.get(last, RUN.clusters) + clusters);
        if (output >= 0) waiting.set(last, RUN.outputEnd, output + bytes);
        return;
      }
    }
    waiting.push(sourceHost, output, clusters, 0, output < 0 ? 0 : output + bytes);
  }

  publish(writtenEnd: number): void {
    if (this.closed) return;
    this.enterConfirmed();
    const head = Atomics.load(this.control, EARLY_CONTROL.head);
    let next = head;
    const room = RING_RUNS - (head - this.entered);
    const waiting = this.waiting;
    // The last waiting run may still grow; it goes once the copy has moved past it (or at the end).
    let publishable = writtenEnd === Number.POSITIVE_INFINITY ? waiting.length : waiting.length - 1;
    // Zeros left out have nothing in the file to wait for (their end is 0).
    while (publishable > 0 && next - head < room && waiting.get(0, RUN.outputEnd) <= writtenEnd) {
      waiting.copyOldest(this.ring, (next % RING_RUNS) * RUN_FIELDS);
      waiting.shift();
      publishable--;
      next++;
    }
    if (next === head) return;
    Atomics.store(this.control, EARLY_CONTROL.head, next);
    this.signal();
  }

  finish(helperStartMs = this.helperStartMs): boolean {
    if (this.closed) return false;
    this.publish(Number.POSITIVE_INFINITY);
    Atomics.store(this.control, EARLY_CONTROL.end, 1);
    this.signal();
    const helperRan = awaitHelperStart(this.control, EARLY_CONTROL.ready, 1, helperStartMs);
    if (helperRan) this.awaitHelper();
    this.enterConfirmed();
    this.close();
    return helperRan;
  }

  /** Enters the runs the helper has confirmed since the last call in `confirmed`, read back from their ring slots. */
  private enterConfirmed(): void {
    const confirmedCount = Math.min(Atomics.load(this.control, EARLY_CONTROL.confirmed), Atomics.load(this.control, EARLY_CONTROL.head));
    for (; this.entered < confirmedCount; this.entered++) {
      const at = (this.entered % RING_RUNS) * RUN_FIELDS;
      const sourceHost = this.ring[at + RUN.sourceHost] ?? 0;
      const outputHost = this.ring[at + RUN.outputHost] ?? 0;
      const clusters = this.ring[at + RUN.clusters] ?? 0;
      const tag = this.ring[at + RUN.tag] ?? 0;
      const sourceSize = this.ring[at + RUN.sourceSize] ?? 0;
      if (sourceSize > 0) {
        this.confirmedCompressed.set(sourceHost, sourceSize, outputHost, tag);
        continue;
      }
      for (let cluster = 0; cluster < clusters; cluster++) {
        this.confirmed.set(sourceHost + cluster * this.clusterBytes, outputHost < 0 ? outputHost : outputHost + cluster * this.clusterBytes, tag);
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.control, EARLY_CONTROL.end, 1);
    this.signal();
    endHelperThread(this.worker);
  }

  private signal(): void {
    Atomics.add(this.control, EARLY_CONTROL.signal, 1);
    Atomics.notify(this.control, EARLY_CONTROL.signal);
  }

  /** Until the helper stops, or stops moving for STALL_MS (it died). */
  private awaitHelper(): void {
    let last = -1;
    let lastMoved = Date.now();
    while (Atomics.load(this.control, EARLY_CONTROL.stopped) === 0) {
      const confirmed = Atomics.load(this.control, EARLY_CONTROL.confirmed);
      if (confirmed !== last) {
        last = confirmed;
        lastMoved = Date.now();
      } else if (Date.now() - lastMoved > STALL_MS) return;
      Atomics.wait(this.control, EARLY_CONTROL.confirmed, confirmed, 50);
    }
  }
}

/**
 * The helper's side: compares published runs in order until the copy's end, a difference or a
 * failed read; each run found equal moves `confirmed` on.
 */
export function compareEarly(data: EarlyVerifyWorkerData): void {
  const control = new Int32Array(data.control);
  const ring = new Float64Array(data.ring);
  const sourceBytes = alignedBytes(Math.max(EARLY_READ_BYTES, data.clusterBytes));
  const outputBytes = alignedBytes(Math.max(EARLY_READ_BYTES, maxCompressedRead(data.clusterBytes)));
  const buffers = { sourceBytes, outputBytes, decompressed: new Uint8Array(data.clusterBytes) };
  Atomics.store(control, EARLY_CONTROL.ready, 1);
  Atomics.notify(control, EARLY_CONTROL.ready);
  let confirmed = Atomics.load(control, EARLY_CONTROL.confirmed);
  try {
    for (;;) {
      const signal = Atomics.load(control, EARLY_CONTROL.signal);
      const head = Atomics.load(control, EARLY_CONTROL.head);
      if (confirmed === head) {
        if (Atomics.load(control, EARLY_CONTROL.end) !== 0) break;
        Atomics.wait(control, EARLY_CONTROL.signal, signal);
        continue;
      }
      const at = (confirmed % RING_RUNS) * RUN_FIELDS;
      const sourceHost = ring[at + RUN.sourceHost] ?? 0;
      const outputHost = ring[at + RUN.outputHost] ?? 0;
      const length = (ring[at + RUN.clusters] ?? 0) * data.clusterBytes;
      const tag = ring[at + RUN.tag] ?? 0;
      const streamBytes = ring[at + RUN.streamBytes] ?? 0;
      let same: boolean;
      if ((ring[at + RUN.sourceSize] ?? 0) > 0) same = sameStreamOrUnread(data, sourceHost, outputHost, streamBytes, buffers);
      else if (tag > 0) same = sameCompressedOrUnread(data, sourceHost, outputHost, tag, buffers);
      else same = sameRunOrUnread(data, sourceHost, outputHost, length, sourceBytes, outputBytes);
      if (!same) break;
      confirmed++;
      Atomics.store(control, EARLY_CONTROL.confirmed, confirmed);
      Atomics.notify(control, EARLY_CONTROL.confirmed);
    }
  } finally {
    Atomics.store(control, EARLY_CONTROL.stopped, 1);
    Atomics.notify(control, EARLY_CONTROL.confirmed);
  }
}

/**
 * sameRun, false where a read fails: the final comparison reads that run again and reports the
 * error itself (a helper thread that threw would only add a "helper thread failed" notice).
 */
function sameRunOrUnread(data: EarlyVerifyWorkerData, sourceHost: number, outputHost: number, length: number, sourceBytes: Uint8Array, outputBytes: Uint8Array): boolean {
  try {
    return sameRun(data, sourceHost, outputHost, length, sourceBytes, outputBytes);
  } catch {
    return false;
  }
}

/** Whether the run reads the same from both files; for zeros left out (`outputHost` below zero), whether the source's are all zeros. */
function sameRun(data: EarlyVerifyWorkerData, sourceHost: number, outputHost: number, length: number, sourceBytes: Uint8Array, outputBytes: Uint8Array): boolean {
  // Zeros left out where the source holds a hole: what the hole reads, without filling and scanning it.
  if (outputHost < 0 && data.sourceHoles !== null && withinHole(data.sourceHoles, sourceHost, sourceHost + length)) return true;
  for (let done = 0; done < length; done += EARLY_READ_BYTES) {
    const part = Math.min(EARLY_READ_BYTES, length - done);
    const a = sourceBytes.subarray(0, part);
    if (data.sourceHoles !== null && withinHole(data.sourceHoles, sourceHost + done, sourceHost + done + part)) a.fill(0);
    else readFully(data.sourceDescriptor, a, sourceHost + done);
    if (outputHost < 0) {
      if (!isAllZero(a)) return false;
      continue;
    }
    const b = outputBytes.subarray(0, part);
    readFully(data.outputDescriptor, b, outputHost + done);
    if (!bytesEqual(a, b)) return false;
  }
  return true;
}

/** What a reader reads of a compressed entry's stored bytes at most (Qcow2Image.decompress). */
function maxCompressedRead(clusterBytes: number): number {
  return clusterBytes + 2 * 512;
}

/**
 * Whether the source cluster at `sourceHost` reads the same as the compressed entry at
 * `outputHost` (stored size `tag`) decompresses to, read and decompressed as Qcow2Image.decompress
 * does; false where a read or the decompression fails (the final comparison then reports it).
 */
function sameCompressedOrUnread(data: EarlyVerifyWorkerData, sourceHost: number, outputHost: number, tag: number, buffers: { sourceBytes: Uint8Array; outputBytes: Uint8Array; decompressed: Uint8Array }): boolean {
  try {
    const source = buffers.sourceBytes.subarray(0, data.clusterBytes);
    if (data.sourceHoles !== null && withinHole(data.sourceHoles, sourceHost, sourceHost + data.clusterBytes)) source.fill(0);
    else readFully(data.sourceDescriptor, source, sourceHost);
    const stored = buffers.outputBytes.subarray(0, Math.min(tag, maxCompressedRead(data.clusterBytes)));
    const count = readUpTo(data.outputDescriptor, stored, outputHost);
    return bytesEqual(source, decompressCluster(data.compressionType, stored.subarray(0, count), data.clusterBytes, buffers.decompressed));
  } catch {
    return false;
  }
}

/**
 * Whether compressed data kept as the source stored it reads the same on both sides: its stream's
 * bytes equal. Both sides then decompress to the same cluster, as a reader decodes a stream from
 * its start and reads no further than its end (compressedStreamLength measured that end); false
 * where either side is short or a read fails.
 */
function sameStreamOrUnread(data: EarlyVerifyWorkerData, sourceOffset: number, outputHost: number, streamBytes: number, buffers: { sourceBytes: Uint8Array; outputBytes: Uint8Array }): boolean {
  try {
    if (streamBytes <= 0 || streamBytes > buffers.sourceBytes.length || streamBytes > buffers.outputBytes.length) return false;
    const source = buffers.sourceBytes.subarray(0, streamBytes);
    const output = buffers.outputBytes.subarray(0, streamBytes);
    if (readUpTo(data.sourceDescriptor, source, sourceOffset) < streamBytes || readUpTo(data.outputDescriptor, output, outputHost) < streamBytes) return false;
    return bytesEqual(source, output);
  } catch {
    return false;
  }
}

/** Reads up to `target.length` bytes at `position`, stopping at the end of the file; returns how many. */
function readUpTo(descriptor: number, target: Uint8Array, position: number): number {
  let done = 0;
  while (done < target.length) {
    const count = fs.readSync(descriptor, target, done, target.length - done, position + done);
    if (count === 0) break;
    done += count;
  }
  return done;
}

/** Reads `target.length` bytes at `position`; past the end of the file, zeros (as the image reads them). */
function readFully(descriptor: number, target: Uint8Array, position: number): void {
  target.fill(0, readUpTo(descriptor, target, position));
}
