/**
 * The first pass of a rewrite: a walk over the mapping tables of every state (the current one,
 * then each snapshot) that counts what the new image must hold, before any byte is written:
 *  - each distinct L2 table once, with the number of L1 entries (over all states) naming it;
 *  - each distinct data cluster and compressed cluster once, with its reference count as qcow2
 *    counts it (one per L1 entry that reaches it through an L2 table: qemu-img check's rule).
 * The rewrite then writes each of them once, so whatever the states share stays shared.
 *
 * Memory: a few bytes per host cluster of the source file and per compressed cluster (typed
 * arrays), a map entry per L2 table.
 */
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned } from '../format/bytes.ts';
import { decodeL2, type L2Entry } from '../format/entries.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import type { L1Table, Qcow2Image } from '../image/image.ts';
import type { JobContext } from '../job-context.ts';
import { CompressedClusters } from './compressed-clusters.ts';
import type { CompressedData } from '../model.ts';

/** A state the image holds: its current disk (snapshot null) or a snapshot's. */
export interface PlannedState {
  snapshot: SnapshotEntry | null;
  l1: L1Table;
}

/** Per-cluster marks in RewritePlan.clusterMarks. */
export const MARK_DATA = 1;
/**
 * Referenced by extended L2 entries whose guest view depends on more than the cluster's bytes
 * (subclusters that show the backing file, or entries that disagree on which subclusters they
 * allocate): copied exactly, and each entry keeps its subcluster bits.
 */
export const MARK_VERBATIM = 2;
/**
 * Referenced only by extended L2 entries that allocate the same subclusters, where every other
 * subcluster reads zeros: the cluster is its allocated bytes with zeros elsewhere, and is written
 * as a whole cluster (compressed, or found all zero, like any other).
 */
export const MARK_PARTLY_ALLOCATED = 4;

export interface RewritePlan {
  states: PlannedState[];
  /** Distinct source L2 table offsets, in the order the states first name them (current state first). */
  l2Tables: number[];
  /** Source L2 table offset → L1 entries naming it. */
  l2Users: Map<number, number>;
  /** Source L2 table offset → the L1 index that first names it (where its clusters lie in the guest disk). */
  l2FirstIndex: Map<number, number>;
  /** Per source host cluster: references to it as a data cluster (0: none). */
  clusterReferences: Uint32Array;
  /** Per source host cluster: MARK_* bits. */
  clusterMarks: Uint8Array;
  /** Extended L2 only (else empty): per source host cluster, the subclusters its first entry allocates. */
  clusterAllocMasks: Uint32Array;
  /** The compressed data of every state, by source byte offset: its size and references. */
  compressed: CompressedClusters;
  /** Distinct data clusters and compressed clusters: the work of the copy, for progress and estimates. */
  dataClusters: number;
  compressedClusters: number;
  compressedBytes: number;
  /** Source L2 tables that hold a compressed entry (which states hold compressed data: compressedData). */
  compressedL2Tables: Set<number>;
}

export function planRewrite(image: Qcow2Image, job: JobContext): RewritePlan {
  const states: PlannedState[] = [{ snapshot: null, l1: image.l1 }];
  for (const snapshot of image.snapshots) states.push({ snapshot, l1: image.loadSnapshotL1(snapshot) });
  const l2Tables: number[] = [];
  const l2Users = new Map<number, number>();
  const l2FirstIndex = new Map<number, number>();
  for (const state of states) {
    job.throwIfCancelled();
    for (let l1Index = 0; l1Index < state.l1.size; l1Index++) {
      const l2Offset = image.l2OffsetAt(state.l1, l1Index);
      if (l2Offset === 0) continue;
      const users = l2Users.get(l2Offset);
      if (users === undefined) {
        l2Tables.push(l2Offset);
        l2Users.set(l2Offset, 1);
        l2FirstIndex.set(l2Offset, l1Index);
      } else l2Users.set(l2Offset, users + 1);
    }
  }
  const fileClusters = Math.ceil(image.file.size() / image.clusterBytes);
  const plan: RewritePlan = {
    states,
    l2Tables,
    l2Users,
    l2FirstIndex,
    clusterReferences: new Uint32Array(fileClusters),
    clusterMarks: new Uint8Array(fileClusters),
    clusterAllocMasks: new Uint32Array(image.l2Format.extendedL2 ? fileClusters : 0),
    compressed: new CompressedClusters(),
    dataClusters: 0,
    compressedClusters: 0,
    compressedBytes: 0,
    compressedL2Tables: new Set(),
  };
  const fullMask = 0xffffffff;
  const hasBacking = image.header.backingFile !== null;
  for (let tableIndex = 0; tableIndex < l2Tables.length; tableIndex++) {
    const l2Offset = l2Tables[tableIndex] ?? 0;
    if (tableIndex % 64 === 0) {
      job.throwIfCancelled();
      job.progress('reading the mapping tables', tableIndex, l2Tables.length, 'steps');
    }
    const users = l2Users.get(l2Offset) ?? 1;
    forEachEntry(image, l2Offset, (entry) => {
      if (entry.kind === 'compressed') {
        plan.compressedL2Tables.add(l2Offset);
        if (plan.compressed.add(entry.hostOffset, entry.compressedSize, users)) {
          plan.compressedClusters++;
          plan.compressedBytes += entry.compressedSize;
        }
        return;
      }
      if (entry.kind !== 'normal') return;
      const cluster = entry.hostOffset / image.clusterBytes;
      if (cluster >= fileClusters) {
        throw new Qcow2Error('CORRUPT', `A data cluster at ${hex(entry.hostOffset)} lies past the end of the file; check and repair the disk first`);
      }
      const marks = plan.clusterMarks[cluster] ?? 0;
      const first = (marks & MARK_DATA) === 0;
      if (first) plan.dataClusters++;
      let next = marks | MARK_DATA;
      if (image.l2Format.extendedL2) {
        const allocMask = entry.allocMask >>> 0;
        const zeroMask = entry.zeroMask >>> 0;
        if (first) plan.clusterAllocMasks[cluster] = allocMask;
        const whole = allocMask === fullMask && zeroMask === 0;
        // What a subcluster outside allocMask reads: zeros, unless it shows the backing file (a
        // subcluster both allocated and zero is invalid: kept exactly as it is, for check to judge).
        const restReadsZeros = (allocMask & zeroMask) === 0 && (!hasBacking || ((allocMask | zeroMask) >>> 0) === fullMask);
        if (!first && plan.clusterAllocMasks[cluster] !== allocMask) next |= MARK_VERBATIM;
        else if (!whole && !restReadsZeros) next |= MARK_VERBATIM;
        else if (!whole) next |= MARK_PARTLY_ALLOCATED;
      }
      plan.clusterMarks[cluster] = next;
      plan.clusterReferences[cluster] = (plan.clusterReferences[cluster] ?? 0) + users;
    });
  }
  return plan;
}

export function compressedData(image: Qcow2Image, plan: RewritePlan): CompressedData {
  const holdsCompressed = (state: PlannedState): boolean => {
    if (plan.compressedL2Tables.size === 0) return false;
    for (let l1Index = 0; l1Index < state.l1.size; l1Index++) if (plan.compressedL2Tables.has(image.l2OffsetAt(state.l1, l1Index))) return true;
    return false;
  };
  const [current, ...snapshots] = plan.states;
  return {
    clusters: plan.compressedClusters,
    storedBytes: plan.compressedBytes,
    guestBytes: plan.compressedClusters * image.clusterBytes,
    inCurrent: current !== undefined && holdsCompressed(current),
    inSnapshots: snapshots.filter(holdsCompressed).length,
  };
}

/**
 * Every entry of the L2 table at `l2Offset` that says anything, decoded and checked as a reader
 * would check it. Entries of all-zero bits (unallocated, nothing to read or keep: most of a sparse
 * disk's) are not visited, nor decoded.
 */
export function forEachEntry(image: Qcow2Image, l2Offset: number, visit: (entry: L2Entry, slot: number) => void): void {
  // Taken out of the map while in use: a walk of the same image inside `visit` reads into its own.
  const scratch = walkBuffers.get(image) ?? new Uint8Array(image.clusterBytes);
  walkBuffers.delete(image);
  try {
    const bytes = image.l2Cache.peek(l2Offset, scratch);
    const tableView = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    const wordsPerEntry = image.l2EntryBytes / 4;
    for (let slot = 0, word = 0; slot < image.l2Entries; slot++, word += wordsPerEntry) {
      if (wordsPerEntry === 2 ? ((words[word] ?? 0) | (words[word + 1] ?? 0)) === 0 : ((words[word] ?? 0) | (words[word + 1] ?? 0) | (words[word + 2] ?? 0) | (words[word + 3] ?? 0)) === 0) continue;
      const entry = decodeL2(tableView, slot * image.l2EntryBytes, image.l2Format);
      if (entry.kind === 'normal' && !isAligned(entry.hostOffset, image.clusterBytes)) {
        throw new Qcow2Error('CORRUPT', `The L2 table at ${hex(l2Offset)} names an unaligned data cluster ${hex(entry.hostOffset)}; check and repair the disk first`);
      }
      visit(entry, slot);
    }
  } finally {
    walkBuffers.set(image, scratch);
  }
}

/**
 * Each image's buffer for the table forEachEntry walks: every phase of a rewrite (plan, copy,
 * comparison) walks each distinct table once, and a new buffer per table left hundreds of MiB of
 * garbage behind on a disk with 1,000 snapshots (each state its own copied table), which the
 * process held until the collector ran.
 */
const walkBuffers = new WeakMap<Qcow2Image, Uint8Array>();
