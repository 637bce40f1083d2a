/**
 * What differs between two states of a disk (two snapshots, or a snapshot and the current state),
 * from the mapping tables alone: a guest cluster differs when the two states map it differently.
 * An L2 table both states share is skipped whole. Guest data is never read, so two clusters that
 * hold equal bytes in different host clusters still count as different.
 */
import { alignUp } from '../format/bytes.ts';
import { decodeL2, type L2Entry } from '../format/entries.ts';
import type { L1Table, Qcow2Image, SnapshotRef } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { DiffResult } from '../model.ts';
import { findSnapshot } from './snapshots.ts';

function readsAsZero(entry: L2Entry | null, hasBacking: boolean): boolean {
  if (entry === null) return !hasBacking;
  if (entry.kind === 'zero') return true;
  if (entry.kind === 'unallocated') return !hasBacking && entry.allocMask === 0;
  return false;
}

function sameMapping(a: L2Entry | null, b: L2Entry | null, hasBacking: boolean): boolean {
  if (a === null || b === null) {
    if (a === b) return true;
    return readsAsZero(a, hasBacking) && readsAsZero(b, hasBacking);
  }
  if (a.kind !== b.kind) return readsAsZero(a, hasBacking) && readsAsZero(b, hasBacking);
  return a.hostOffset === b.hostOffset && a.allocMask === b.allocMask && a.zeroMask === b.zeroMask && a.compressedSize === b.compressedSize;
}

export function resolveState(image: Qcow2Image, nameOrCurrent: SnapshotRef): { l1: L1Table; size: number } {
  if (nameOrCurrent === 'current') return { l1: image.l1, size: image.virtualSize };
  const snapshot = findSnapshot(image, nameOrCurrent);
  return { l1: image.loadSnapshotL1(snapshot), size: snapshot.diskSize ?? image.virtualSize };
}

export function diffStates(image: Qcow2Image, from: SnapshotRef, to: SnapshotRef, job: JobContext = silentJob): DiffResult {
  const a = resolveState(image, from);
  const b = resolveState(image, to);
  const size = Math.max(a.size, b.size);
  const clusterBytes = image.clusterBytes;
  const perTable = image.l2Entries;
  const hasBacking = image.header.backingFile !== null;
  const ranges: { offset: number; length: number }[] = [];
  let bytes = 0;
  const addRange = (offset: number, length: number): void => {
    const clipped = Math.min(length, size - offset);
    if (clipped <= 0) return;
    bytes += clipped;
    const last = ranges.at(-1);
    if (last && last.offset + last.length === offset) last.length += clipped;
    else ranges.push({ offset, length: clipped });
  };
  const tables = Math.ceil(size / (perTable * clusterBytes));
  // Where neither state has an L2 table, only a difference in disk size can differ: from the
  // first whole cluster past the smaller size. Past both L1 tables that is one range, not a walk.
  const sizeDifferenceFrom = alignUp(Math.min(a.size, b.size), clusterBytes);
  const unmappedRange = (start: number, end: number): void => {
    const from = Math.max(start, sizeDifferenceFrom);
    if (end > from) addRange(from, end - from);
  };
  const mappedTables = Math.min(tables, Math.max(a.l1.size, b.l1.size));
  for (let l1Index = 0; l1Index < mappedTables; l1Index++) {
    if (l1Index % 64 === 0) {
      job.throwIfCancelled();
      job.progress('comparing', l1Index, tables, 'steps');
    }
    const tableA = l1Index < a.l1.size ? image.l2OffsetAt(a.l1, l1Index) : 0;
    const tableB = l1Index < b.l1.size ? image.l2OffsetAt(b.l1, l1Index) : 0;
    if (tableA === tableB && (tableA !== 0 || a.size === b.size)) continue;
    if (tableA === 0 && tableB === 0) {
      unmappedRange(l1Index * perTable * clusterBytes, (l1Index + 1) * perTable * clusterBytes);
      continue;
    }
    const viewA = tableA !== 0 ? image.l2Cache.get(tableA).view : null;
    const entriesA: (L2Entry | null)[] = [];
    for (let slot = 0; slot < perTable; slot++) entriesA.push(viewA ? decodeL2(viewA, slot * image.l2EntryBytes, image.l2Format) : null);
    const viewB = tableB !== 0 ? image.l2Cache.get(tableB).view : null;
    for (let slot = 0; slot < perTable; slot++) {
      const guestOffset = (l1Index * perTable + slot) * clusterBytes;
      if (guestOffset >= size) break;
      const entryB = viewB ? decodeL2(viewB, slot * image.l2EntryBytes, image.l2Format) : null;
      const beyondA = guestOffset >= a.size;
      const beyondB = guestOffset >= b.size;
      if (beyondA !== beyondB || !sameMapping(entriesA[slot] ?? null, entryB, hasBacking)) addRange(guestOffset, clusterBytes);
    }
  }
  unmappedRange(mappedTables * perTable * clusterBytes, size);
  job.progress('comparing', tables, tables, 'steps');
  return { ranges, bytes };
}
