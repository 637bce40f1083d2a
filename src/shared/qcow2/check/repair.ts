/**
 * Check repairs that keep the refcount structure where it is: refcounts raised or lowered to the
 * references found, and entries that can be made valid without changing what the guest reads.
 * Every step ends with a flush, and the order is the crash-safe one: raise before lower, and a
 * pointer is dropped before the refcount it held.
 */
import type { CheckFindings } from './findings.ts';
import { hexEntry } from '../format/bytes.ts';
import { ROLE_L1, ROLE_L2 } from './expected.ts';
import type { ReferenceScan } from './scan.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { view } from '../format/bytes.ts';
import { decodeL1, decodeL2, encodeL2 } from '../format/entries.ts';
import type { Qcow2Image } from '../image/image.ts';

/** Raises too-low refcounts (or lowers leaked ones) to the references found; returns clusters changed. */
export function adjustRefcounts(image: Qcow2Image, scan: ReferenceScan, direction: 'raise' | 'lower', findings: CheckFindings): number {
  const { expected, stored } = scan;
  const end = expected.compareEnd;
  const perBlock = stored.entriesPerBlock;
  let changed = 0;
  for (let index = 0; index * perBlock < end; index++) {
    if (stored.state(index) !== 'valid') continue;
    const block = stored.readBlock(index);
    const first = index * perBlock;
    const last = Math.min(end, first + perBlock);
    let blockChanged = false;
    for (let cluster = first; cluster < last; cluster++) {
      const refcount = stored.entry(block, cluster - first);
      const target = expected.target(cluster);
      if (direction === 'raise' ? refcount >= target : refcount <= target) continue;
      stored.set(block, cluster - first, target);
      findings.note(`Repairing cluster ${cluster} refcount=${refcount} reference=${target}`);
      blockChanged = true;
      changed++;
    }
    if (blockChanged) image.file.write(block.bytes, block.offset);
  }
  if (changed > 0) image.file.flush();
  stored.clear();
  return changed;
}

/**
 * Entries a repair can make valid with the guest reading exactly what it read before: an L1
 * entry naming an L2 table past the end of the file (it read as unallocated), a data cluster
 * past the end (it read as zeros) and a preallocated zero cluster at an unaligned offset.
 * Returns the entries changed. None of these were counted as references, except the unaligned
 * preallocation, whose clusters become leaks for the refcount step to lower.
 */
export function repairEntries(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings): number {
  let changed = 0;
  for (const [l1Offset, l1Size] of scan.l1TablesToFix) {
    // A "table" that overlaps the header or other metadata (a snapshot's L1 offset of 0) is not written to.
    if (clustersOf(image, l1Offset, l1Size * 8).some((cluster) => (scan.expected.rolesOf(cluster) & ~ROLE_L1) !== 0)) continue;
    changed += repairL1Entries(image, l1Offset, l1Size, findings);
  }
  for (const l2Offset of scan.l2TablesToFix) {
    if ((scan.expected.rolesOf(l2Offset / image.clusterBytes) & ~ROLE_L2) !== 0) continue;
    changed += repairL2Entries(image, l2Offset, findings);
  }
  if (changed > 0) image.file.flush();
  return changed;
}

function clustersOf(image: Qcow2Image, offset: number, bytes: number): number[] {
  const clusters: number[] = [];
  for (let cluster = Math.floor(offset / image.clusterBytes); cluster * image.clusterBytes < offset + bytes; cluster++) clusters.push(cluster);
  return clusters;
}

function pastEnd(offset: number, size: number, fileSize: number, clusterBytes: number): boolean {
  return offset + size - fileSize >= clusterBytes;
}

function repairL1Entries(image: Qcow2Image, l1Offset: number, l1Size: number, findings: CheckFindings): number {
  const { file, clusterBytes } = image;
  const fileSize = file.size();
  const bytes = readZeroFilled(file, l1Offset, l1Size * 8);
  const table = view(bytes);
  let changed = 0;
  for (let index = 0; index < l1Size; index++) {
    const position = index * 8;
    const { l2Offset } = decodeL1(table, position);
    if (l2Offset === 0 || !pastEnd(l2Offset, clusterBytes, fileSize, clusterBytes)) continue;
    findings.note(`Repairing L1 entry ${index} of the L1 table at 0x${l1Offset.toString(16)}: its L2 table at 0x${l2Offset.toString(16)} lies past the end of the file (it read as unallocated)`);
    table.setUint32(position, 0);
    table.setUint32(position + 4, 0);
    file.write(bytes.subarray(position, position + 8), l1Offset + position);
    changed++;
  }
  return changed;
}

function repairL2Entries(image: Qcow2Image, l2Offset: number, findings: CheckFindings): number {
  const { file, clusterBytes, l2Format } = image;
  const fileSize = file.size();
  const bytes = readZeroFilled(file, l2Offset, clusterBytes);
  const table = view(bytes);
  const zeroFlagAvailable = image.version === 3;
  let changed = 0;
  for (let index = 0; index < image.l2Entries; index++) {
    const position = index * image.l2EntryBytes;
    const high = table.getUint32(position);
    const low = table.getUint32(position + 4);
    if (high === 0 && low === 0) continue;
    const entry = decodeL2(table, position, l2Format);
    if ((entry.kind !== 'normal' && entry.kind !== 'zero') || entry.hostOffset === 0) continue;
    const preallocatedOnly = l2Format.extendedL2 ? entry.allocMask === 0 : entry.kind === 'zero';
    const unalignedPreallocation = entry.hostOffset % clusterBytes !== 0 && preallocatedOnly;
    const beyondEnd = pastEnd(entry.hostOffset, clusterBytes, fileSize, clusterBytes);
    if (!unalignedPreallocation && !beyondEnd) continue;
    let replacement: { zero: boolean; allocMask: number; zeroMask: number };
    if (l2Format.extendedL2) {
      // Allocated subclusters read zeros past the end of the file: they become zero subclusters.
      replacement = { zero: false, allocMask: 0, zeroMask: (entry.zeroMask | entry.allocMask) >>> 0 };
    } else if (entry.kind === 'zero' || zeroFlagAvailable) {
      replacement = { zero: true, allocMask: 0, zeroMask: 0 };
    } else if (image.header.backingFile === null) {
      // Version 2 has no zero flag; without a backing file an unallocated cluster reads zeros too.
      replacement = { zero: false, allocMask: 0, zeroMask: 0 };
    } else {
      findings.note(`Cannot repair L2 entry ${hexEntry(high, low)}: its cluster lies past the end of the file and a version 2 image with a backing file has no zero clusters`);
      continue;
    }
    encodeL2(table, position, l2Format, { hostOffset: 0, copied: false, ...replacement });
    const why = beyondEnd ? 'its cluster lies past the end of the file' : 'its preallocated cluster is not aligned';
    findings.note(`Repairing L2 entry ${index} of the L2 table at 0x${l2Offset.toString(16)} (${hexEntry(high, low)}): ${why}; it reads as zeros as before`);
    changed++;
  }
  if (changed > 0) file.write(bytes, l2Offset);
  return changed;
}
