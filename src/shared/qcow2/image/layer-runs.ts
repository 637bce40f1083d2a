/**
 * One image layer's guest→host mapping as runs, read from its L1 and L2 tables only (no guest
 * data). The states follow QEMU's subcluster types (block/qcow2.h QCow2SubclusterType), which is
 * what `qemu-img map` and convert's block-status skipping are built on.
 */
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned } from '../format/bytes.ts';
import { decodeL2, type L2Entry } from '../format/entries.ts';
import { isAllZero } from '../format/zeroes.ts';
import type { L1Table, Qcow2Image } from './image.ts';

/**
 * data: guest bytes in a host cluster; zero: reads as zeros (zero flag or zero subcluster);
 * compressed: in a compressed cluster; unallocated: this layer has nothing (the backing shows).
 */
export type RunKind = 'data' | 'zero' | 'compressed' | 'unallocated';

/**
 * `hostOffset` is the host byte of the run's first guest byte, or -1 when the run has none (it
 * is set for data, for zero clusters that keep a host cluster, and for unallocated subclusters of
 * a cluster that has one — QEMU reports an offset in all three cases).
 */
/** Bytes of L2 entries tested for all-zero at once (a whole number of entries of either width). */
const ZERO_TEST_BYTES = 512;

export type RunVisitor = (guestOffset: number, length: number, kind: RunKind, hostOffset: number) => void;

/**
 * Visits [start, end) of the guest disk as `l1` maps it, in order. Consecutive calls may have the
 * same kind (callers merge); an L1 entry without an L2 table is one call for its whole range.
 */
export function visitLayerRuns(image: Qcow2Image, l1: L1Table, start: number, end: number, visitRun: RunVisitor): void {
  // Unallocated clusters in a row (no host offset) go out as one run: most of a sparse layer, which
  // callers would otherwise handle a cluster at a time.
  let holeStart = -1;
  let holeEnd = -1;
  const visit: RunVisitor = (guestOffset, length, kind, hostOffset) => {
    if (kind === 'unallocated' && hostOffset === -1) {
      if (holeEnd === guestOffset) holeEnd += length;
      else {
        if (holeStart >= 0) visitRun(holeStart, holeEnd - holeStart, 'unallocated', -1);
        holeStart = guestOffset;
        holeEnd = guestOffset + length;
      }
      return;
    }
    if (holeStart >= 0) visitRun(holeStart, holeEnd - holeStart, 'unallocated', -1);
    holeStart = -1;
    holeEnd = -1;
    visitRun(guestOffset, length, kind, hostOffset);
  };
  walkLayerRuns(image, l1, start, end, visit);
  if (holeStart >= 0) visitRun(holeStart, holeEnd - holeStart, 'unallocated', -1);
}

function walkLayerRuns(image: Qcow2Image, l1: L1Table, start: number, end: number, visit: RunVisitor): void {
  const clusterBytes = image.clusterBytes;
  const l2Span = image.l2Entries * clusterBytes;
  let position = start;
  while (position < end) {
    const l1Index = Math.floor(position / l2Span);
    // Past the L1 table nothing is mapped: one run, however large the disk claims to be.
    if (l1Index >= l1.size) {
      visit(position, end - position, 'unallocated', -1);
      return;
    }
    const spanEnd = Math.min(end, (l1Index + 1) * l2Span);
    const l2Offset = image.l2OffsetAt(l1, l1Index);
    if (l2Offset === 0) {
      visit(position, spanEnd - position, 'unallocated', -1);
      position = spanEnd;
      continue;
    }
    const table = image.l2Cache.get(l2Offset);
    const blockSlots = ZERO_TEST_BYTES / image.l2EntryBytes;
    while (position < spanEnd) {
      const clusterStart = position - (position % clusterBytes);
      const clusterEnd = Math.min(spanEnd, clusterStart + clusterBytes);
      const slot = (clusterStart / clusterBytes) % image.l2Entries;
      // A block of all-zero entries (unallocated in every L2 format) is one run, found by one native test.
      if (slot % blockSlots === 0 && isAllZero(table.bytes.subarray(slot * image.l2EntryBytes, (slot + blockSlots) * image.l2EntryBytes))) {
        const blockEnd = Math.min(spanEnd, clusterStart + blockSlots * clusterBytes);
        visit(position, blockEnd - position, 'unallocated', -1);
        position = blockEnd;
        continue;
      }
      const entry = decodeL2(table.view, slot * image.l2EntryBytes, image.l2Format);
      if (image.l2Format.extendedL2 && entry.kind !== 'compressed') visitSubclusters(image, entry, clusterStart, position, clusterEnd, visit);
      else visitCluster(entry, clusterStart, position, clusterEnd, clusterBytes, visit);
      position = clusterEnd;
    }
  }
}

function visitCluster(entry: L2Entry, clusterStart: number, from: number, to: number, clusterBytes: number, visit: RunVisitor): void {
  const length = to - from;
  switch (entry.kind) {
    case 'compressed':
      visit(from, length, 'compressed', -1);
      return;
    case 'unallocated':
      visit(from, length, 'unallocated', -1);
      return;
    case 'normal':
      checkAligned(entry.hostOffset, clusterStart, clusterBytes);
      visit(from, length, 'data', entry.hostOffset + (from - clusterStart));
      return;
    case 'zero':
      if (entry.hostOffset === 0) {
        visit(from, length, 'zero', -1);
        return;
      }
      checkAligned(entry.hostOffset, clusterStart, clusterBytes);
      visit(from, length, 'zero', entry.hostOffset + (from - clusterStart));
      return;
  }
}

/** Extended L2: 32 subclusters per cluster, each allocated, zero or neither (qcow2.txt "Extended L2 Entries"). */
function visitSubclusters(image: Qcow2Image, entry: L2Entry, clusterStart: number, from: number, to: number, visit: RunVisitor): void {
  const subclusterBytes = image.subclusterBytes;
  // With an external data file, host offset 0 is a real cluster (a 'normal' entry).
  const hasHost = entry.kind === 'normal';
  const hostCluster = entry.hostOffset;
  if (hasHost) checkAligned(hostCluster, clusterStart, image.clusterBytes);
  let position = from;
  while (position < to) {
    const subcluster = Math.floor((position - clusterStart) / subclusterBytes);
    const kind = subclusterKind(entry, subcluster, clusterStart);
    // Extend over the following subclusters of the same kind.
    let last = subcluster;
    while (last + 1 < 32 && clusterStart + (last + 1) * subclusterBytes < to && subclusterKind(entry, last + 1, clusterStart) === kind) last++;
    const runEnd = Math.min(to, clusterStart + (last + 1) * subclusterBytes);
    const hostOffset = hasHost ? hostCluster + (position - clusterStart) : -1;
    visit(position, runEnd - position, kind, hostOffset);
    position = runEnd;
  }
}

function subclusterKind(entry: L2Entry, subcluster: number, clusterStart: number): RunKind {
  const allocated = ((entry.allocMask >>> subcluster) & 1) === 1;
  const zero = ((entry.zeroMask >>> subcluster) & 1) === 1;
  if (allocated && zero) throw new Qcow2Error('CORRUPT', `Subcluster ${subcluster} at guest offset ${hex(clusterStart)} is both allocated and zero`);
  if (allocated) {
    if (entry.kind !== 'normal') throw new Qcow2Error('CORRUPT', `Subcluster ${subcluster} at guest offset ${hex(clusterStart)} is allocated in a cluster without a host offset`);
    return 'data';
  }
  return zero ? 'zero' : 'unallocated';
}

function checkAligned(hostOffset: number, clusterStart: number, clusterBytes: number): void {
  if (!isAligned(hostOffset, clusterBytes)) {
    throw new Qcow2Error('CORRUPT', `Cluster at guest offset ${hex(clusterStart)} has an unaligned host offset ${hex(hostOffset)}`);
  }
}
