/**
 * The check a rewrite makes before its output may replace anything: the new image, opened afresh
 * from its file, holds the same states as the source — the same snapshots (names, ids, dates, VM
 * clock and state, disk sizes, extra data but for Cowbell's own "you are here" offset) and, for the
 * current state and every snapshot, the same guest data cluster by cluster, with the same ranges
 * left to the backing file.
 *
 * Each pair of (source, new) L2 tables is compared once, and each pair of clusters once, so the
 * cost is one more read of what the images store, not one per state.
 */
import { Qcow2Error } from '../errors.ts';
import { hex } from '../format/bytes.ts';
import { readCowbellRecord } from '../format/cowbell-record.ts';
import type { L2Entry } from '../format/entries.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import { bytesEqual } from '../format/zeroes.ts';
import type { L1Table, Qcow2Image } from '../image/image.ts';
import type { JobContext } from '../job-context.ts';
import { alignedBytes } from '../io/aligned-bytes.ts';
import { runSteps, type Steps } from '../steps.ts';
import { ClusterPairs, CompressedPairs, OUTPUT_UNALLOCATED, OUTPUT_ZERO } from './cluster-pairs.ts';
import { forEachEntry } from './plan.ts';

const NO_TABLE = 0;

export function verifyRewrite(source: Qcow2Image, output: Qcow2Image, job: JobContext): void {
  runSteps(verifyRewriteSteps(source, output, job));
}

/** Pairs of source data and output found equal already (early-verify.ts): not read again. */
export interface ConfirmedPairs {
  plain: ClusterPairs;
  compressed: CompressedPairs;
}

/** verifyRewrite in steps (steps.ts): it yields after each batch of clusters compared, so a CLI's Ctrl-C is heard. */
export function* verifyRewriteSteps(source: Qcow2Image, output: Qcow2Image, job: JobContext, confirmed?: ConfirmedPairs): Steps<void> {
  const mismatch = (what: string): never => {
    throw new Qcow2Error('INTERNAL', `The rewritten disk failed its check against the original (${what}); the original was left as it was`);
  };
  if (output.virtualSize !== source.virtualSize) mismatch('disk size');
  if (output.header.backingFile !== null && source.header.backingFile === null) mismatch('backing file');
  if (output.snapshots.length !== source.snapshots.length) mismatch('number of snapshots');
  const pairs: [L1Table, L1Table, string][] = [[source.l1, output.l1, 'the current state']];
  source.snapshots.forEach((snapshot, index) => {
    const copy = output.snapshots[index];
    if (copy === undefined || !sameSnapshot(snapshot, copy, source.virtualSize)) return mismatch(`snapshot ${snapshot.name}`);
    pairs.push([source.loadSnapshotL1(snapshot), output.loadSnapshotL1(copy), `snapshot ${snapshot.name}`]);
  });
  const comparer = new ClusterComparer(source, output, confirmed ?? { plain: new ClusterPairs(source.file.size(), source.clusterBytes), compressed: new CompressedPairs() });
  yield* compareStates(source, output, pairs, comparer, job, mismatch);
}

function* compareStates(source: Qcow2Image, output: Qcow2Image, pairs: [L1Table, L1Table, string][], comparer: ClusterComparer, job: JobContext, mismatch: (what: string) => never): Steps<void> {
  const byGuestOffset = source.header.cryptMethod === 1 || output.header.cryptMethod === 1;
  const tablesDone = new Set<string>();
  // Progress counts guest clusters walked, state by state, so a disk of a few L2 tables still moves.
  const guestClusters = Math.ceil(source.virtualSize / source.clusterBytes);
  const steps = pairs.length * guestClusters;
  let walked = 0;
  let slots = 0;
  // Slots past the disk's end (the last table's tail) count as its end: progress never passes 100%.
  const reached = (slot: number): void => {
    job.throwIfCancelled();
    job.progress('verifying', walked + Math.min(slot, slots), steps, 'steps');
  };
  for (const [sourceL1, outputL1, what] of pairs) {
    if (outputL1.size !== sourceL1.size) mismatch(`${what}: L1 size`);
    for (let l1Index = 0; l1Index < sourceL1.size; l1Index++) {
      slots = Math.max(0, Math.min(source.l2Entries, guestClusters - l1Index * source.l2Entries));
      reached(0);
      const sourceL2 = source.l2OffsetAt(sourceL1, l1Index);
      const outputL2 = output.l2OffsetAt(outputL1, l1Index);
      // Legacy AES decrypts by guest offset: the same tables elsewhere in the disk read differently.
      const key = byGuestOffset ? `${sourceL2}:${outputL2}:${l1Index}` : `${sourceL2}:${outputL2}`;
      if (!tablesDone.has(key)) {
        tablesDone.add(key);
        if (!(yield* comparer.sameTables(sourceL2, outputL2, l1Index * source.l2Entries, reached))) mismatch(`${what}: guest data at ${hex(l1Index * source.l2Entries * source.clusterBytes)}`);
      }
      walked += slots;
    }
  }
  job.progress('verifying', steps, steps, 'steps');
}

/** QEMU's icount of an entry that has none (before QEMU 5.2). */
const NO_ICOUNT = 0xffff_ffff_ffff_ffffn;

/**
 * The same snapshot, but for what Cowbell's tree record may add: the record itself (the note the
 * same), and QEMU's
 * extra-data fields (VM state size, disk size, icount) filled in where an old entry lacked them.
 */
function sameSnapshot(a: SnapshotEntry, b: SnapshotEntry, diskSize: number): boolean {
  if (a.id !== b.id || a.name !== b.name || a.dateSec !== b.dateSec || a.dateNsec !== b.dateNsec) return false;
  if (a.vmClockNsec !== b.vmClockNsec || a.vmStateSize32 !== b.vmStateSize32 || a.l1Size !== b.l1Size) return false;
  if ((a.vmStateSizeLarge ?? BigInt(a.vmStateSize32)) !== (b.vmStateSizeLarge ?? BigInt(b.vmStateSize32))) return false;
  // A missing icount is QEMU's "none" (-1), and is written back so.
  if ((a.diskSize ?? diskSize) !== (b.diskSize ?? diskSize) || (a.icount ?? NO_ICOUNT) !== (b.icount ?? NO_ICOUNT)) return false;
  // Whole fields only: QEMU reads a field cut short as absent (20 bytes: no icount) and writes it back whole.
  const known = Math.min(24, Math.floor(a.extraData.length / 8) * 8);
  if (!bytesEqual(a.extraData.subarray(0, known), b.extraData.subarray(0, known))) return false;
  // Past QEMU's fields: another program's bytes are kept exactly; Cowbell's tree record may be (re)written, its note kept.
  const record = readCowbellRecord(a);
  if (a.extraData.length > 24 && record === null) return bytesEqual(a.extraData, b.extraData);
  return (record?.note ?? '') === (readCowbellRecord(b)?.note ?? '');
}

/** Guest bytes of one cluster as a state sees them, and which subclusters its backing file supplies. */
interface ClusterView {
  bytes: Uint8Array;
  /** Bit i: subcluster i reads from the backing file (only where the image has one). */
  below: number;
}

/** A pair of whole, plain data clusters waiting to be compared (ClusterComparer.comparePending). */
interface PlainPair {
  sourceHost: number;
  outputHost: number;
}

/** Bytes of plain clusters compared at a time. */
const PLAIN_BATCH_BYTES = 4 * 1024 * 1024;

class ClusterComparer {
  private readonly source: Qcow2Image;
  private readonly output: Qcow2Image;
  private readonly clusterBytes: number;
  /** Pairs found equal whose source is compressed data (by its offset; at first, those the early comparison confirmed), and the rare rest (subclusters, legacy AES) by a key of both entries. */
  private readonly compressedPairs: CompressedPairs;
  private readonly pairsDone = new Set<string>();
  private readonly sourceView: ClusterView;
  private readonly outputView: ClusterView;
  /**
   * Whole data clusters stored as they are on both sides (no encryption, no subclusters): the
   * common case, compared in batches, each side read in runs of neighbouring clusters.
   */
  private readonly plain: boolean;
  /** Neither image has subclusters: an entry is one whole cluster's data, zeros, or nothing. */
  private readonly wholeEntries: boolean;
  /** Each source cluster's output cluster it was (or is queued to be) compared with; at first, the pairs already found equal (early-verify.ts). */
  private readonly plainPairs: ClusterPairs;
  private readonly pending: PlainPair[] = [];
  /** Pairs compared one at a time, to yield as often as for batches. */
  private slowCompared = 0;
  private readonly batchClusters: number;
  private readonly sourceBatch: Uint8Array;
  private readonly outputBatch: Uint8Array;

  constructor(source: Qcow2Image, output: Qcow2Image, confirmed: ConfirmedPairs) {
    this.source = source;
    this.output = output;
    this.plainPairs = confirmed.plain;
    this.compressedPairs = confirmed.compressed;
    this.clusterBytes = source.clusterBytes;
    // Page-aligned: the kernel copies into a misaligned buffer far more slowly (io/aligned-bytes.ts).
    this.sourceView = { bytes: alignedBytes(this.clusterBytes), below: 0 };
    this.outputView = { bytes: alignedBytes(this.clusterBytes), below: 0 };
    this.wholeEntries = !source.l2Format.extendedL2 && !output.l2Format.extendedL2;
    this.plain = this.wholeEntries && source.header.cryptMethod === 0 && output.header.cryptMethod === 0;
    this.batchClusters = Math.max(1, Math.floor(PLAIN_BATCH_BYTES / this.clusterBytes));
    const batchBytes = this.batchClusters * this.clusterBytes;
    this.sourceBatch = this.plain ? alignedBytes(batchBytes) : new Uint8Array(0);
    this.outputBatch = this.plain ? alignedBytes(batchBytes) : new Uint8Array(0);
  }

  /** Compares one pair of L2 tables; `reached(slot)` is told how far it got before each yield (cancel, progress). */
  *sameTables(sourceL2: number, outputL2: number, firstGuestCluster: number, reached: (slot: number) => void): Steps<boolean> {
    const sourceEntries = this.entries(this.source, sourceL2);
    const outputEntries = this.entries(this.output, outputL2);
    const byGuestOffset = this.source.header.cryptMethod === 1 || this.output.header.cryptMethod === 1;
    for (let slot = 0; slot < this.source.l2Entries; slot++) {
      const a = sourceEntries[slot] ?? null;
      const b = outputEntries[slot] ?? null;
      if (this.plain && a?.kind === 'normal' && b?.kind === 'normal') {
        if (this.plainPairs.has(a.hostOffset, b.hostOffset)) continue;
        this.plainPairs.set(a.hostOffset, b.hostOffset);
        this.pending.push({ sourceHost: a.hostOffset, outputHost: b.hostOffset });
        if (this.pending.length < this.batchClusters) continue;
        if (!this.comparePending()) return false;
        reached(slot);
        yield;
        continue;
      }
      // Most entries of a sparse disk store nothing on either side: they read the same when both
      // read zeros or both read the backing file, with nothing to read or to remember.
      const sourceBelow = this.wholeEntries ? readsBelow(this.source, a) : null;
      const outputBelow = this.wholeEntries ? readsBelow(this.output, b) : null;
      if (sourceBelow !== null && outputBelow !== null) {
        if (sourceBelow !== outputBelow) return false;
        continue;
      }
      const guestOffset = (firstGuestCluster + slot) * this.clusterBytes;
      // A whole source data cluster is remembered by its index (compressed, zeroed or encrypted on
      // the way), compressed source data by its offset and size; other pairs (subclusters, legacy
      // AES) by a key of both entries.
      const wholeClusters = !byGuestOffset && !this.source.l2Format.extendedL2 && !this.output.l2Format.extendedL2;
      const from = wholeClusters && a !== null && (a.kind === 'normal' || a.kind === 'compressed') ? a : null;
      const output = from === null ? null : outputKey(b);
      const key = output === null ? `${entryKey(a)}|${entryKey(b)}${byGuestOffset ? `@${guestOffset}` : ''}` : '';
      if (from !== null && output !== null ? this.pairedBefore(from, output) : this.pairsDone.has(key)) continue;
      view(this.source, a, this.sourceView, guestOffset);
      view(this.output, b, this.outputView, guestOffset);
      if (this.sourceView.below !== this.outputView.below || !bytesEqual(this.sourceView.bytes, this.outputView.bytes)) return false;
      if (from !== null && output !== null) this.pair(from, output);
      else this.pairsDone.add(key);
      if (++this.slowCompared % this.batchClusters === 0) {
        reached(slot);
        yield;
      }
    }
    return this.comparePending();
  }

  private pairedBefore(source: L2Entry, output: { at: number; tag: number }): boolean {
    if (source.kind === 'compressed') return this.compressedPairs.has(source.hostOffset, source.compressedSize, output.at, output.tag);
    return this.plainPairs.has(source.hostOffset, output.at, output.tag);
  }

  private pair(source: L2Entry, output: { at: number; tag: number }): void {
    if (source.kind === 'compressed') this.compressedPairs.set(source.hostOffset, source.compressedSize, output.at, output.tag);
    else this.plainPairs.set(source.hostOffset, output.at, output.tag);
  }

  /** Reads the queued pairs (runs of neighbouring clusters in one read each side) and compares them. */
  private comparePending(): boolean {
    const pairs = this.pending.splice(0);
    if (pairs.length === 0) return true;
    const clusterBytes = this.clusterBytes;
    forEachRun(pairs, (pair) => pair.sourceHost, clusterBytes, (first, count, host) => {
      this.source.readData(host, 0, this.sourceBatch.subarray(first * clusterBytes, (first + count) * clusterBytes));
    });
    forEachRun(pairs, (pair) => pair.outputHost, clusterBytes, (first, count, host) => {
      this.output.readData(host, 0, this.outputBatch.subarray(first * clusterBytes, (first + count) * clusterBytes));
    });
    for (let index = 0; index < pairs.length; index++) {
      const start = index * clusterBytes;
      if (!bytesEqual(this.sourceBatch.subarray(start, start + clusterBytes), this.outputBatch.subarray(start, start + clusterBytes))) return false;
    }
    return true;
  }

  private entries(image: Qcow2Image, l2Offset: number): (L2Entry | null)[] {
    if (l2Offset === NO_TABLE) return [];
    const entries: L2Entry[] = [];
    forEachEntry(image, l2Offset, (entry, slot) => {
      entries[slot] = entry;
    });
    return entries;
  }
}

/** Calls `read(first, count, host)` for each run of pairs whose clusters lie side by side in the file. */
function forEachRun(pairs: PlainPair[], hostOf: (pair: PlainPair) => number, clusterBytes: number, read: (first: number, count: number, host: number) => void): void {
  let first = 0;
  for (let index = 1; index <= pairs.length; index++) {
    const previous = pairs[index - 1];
    const next = pairs[index];
    if (previous !== undefined && next !== undefined && hostOf(next) === hostOf(previous) + clusterBytes) continue;
    const start = pairs[first];
    if (start !== undefined) read(first, index - first, hostOf(start));
    first = index;
  }
}

/** For an entry of a whole cluster that stores nothing: whether it reads the backing file (else zeros); null for one that stores data. */
function readsBelow(image: Qcow2Image, entry: L2Entry | null): boolean | null {
  if (entry === null || entry.kind === 'unallocated') return image.header.backingFile !== null;
  return entry.kind === 'zero' ? false : null;
}

/** What an output entry without subclusters holds, as ClusterPairs records it. */
function outputKey(entry: L2Entry | null): { at: number; tag: number } {
  if (entry === null || entry.kind === 'unallocated') return { at: OUTPUT_UNALLOCATED, tag: 0 };
  if (entry.kind === 'zero') return { at: OUTPUT_ZERO, tag: 0 };
  return { at: entry.hostOffset, tag: entry.kind === 'compressed' ? entry.compressedSize : 0 };
}

function entryKey(entry: L2Entry | null): string {
  if (entry === null) return 'none';
  return `${entry.kind}:${entry.hostOffset}:${entry.compressedSize}:${entry.allocMask}:${entry.zeroMask}`;
}

function view(image: Qcow2Image, entry: L2Entry | null, target: ClusterView, guestOffset: number): void {
  const { bytes } = target;
  const hasBacking = image.header.backingFile !== null;
  const subclusters = image.l2Format.extendedL2 ? 32 : 1;
  const subclusterBytes = bytes.length / subclusters;
  const everySubcluster = subclusters === 32 ? 0xffffffff : 1;
  target.below = 0;
  if (entry === null || (entry.kind === 'unallocated' && !image.l2Format.extendedL2)) {
    bytes.fill(0);
    target.below = hasBacking ? everySubcluster : 0;
    return;
  }
  if (entry.kind === 'zero') {
    bytes.fill(0);
    return;
  }
  if (entry.kind === 'compressed') {
    bytes.set(image.decompress(entry));
    return;
  }
  if (!image.l2Format.extendedL2) {
    image.readData(entry.hostOffset, guestOffset, bytes);
    return;
  }
  for (let subcluster = 0; subcluster < subclusters; subcluster++) {
    const part = bytes.subarray(subcluster * subclusterBytes, (subcluster + 1) * subclusterBytes);
    if (((entry.allocMask >>> subcluster) & 1) === 1) image.readData(entry.hostOffset + subcluster * subclusterBytes, guestOffset + subcluster * subclusterBytes, part);
    else {
      part.fill(0);
      if (((entry.zeroMask >>> subcluster) & 1) === 0 && hasBacking) target.below = (target.below | (1 << subcluster)) >>> 0;
    }
  }
}

