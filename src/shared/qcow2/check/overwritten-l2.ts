/**
 * Repairing an L2 table only snapshots use that guest data overwrote: the cluster is the active
 * disk's data now (the guest's latest write), and as an L2 table part of it holds entries no
 * table can hold. QEMU raises the refcount and "fixes" the entries it can in place — which
 * rewrites the guest's data — and leaves the rest broken. Cowbell keeps the guest data, gives
 * the snapshots a copy of the table with every sound entry kept and each broken one emptied
 * (that cluster of the snapshot reads as zeros, or from the backing file), and reports which
 * snapshot lost which guest ranges.
 *
 * Crash-safe order: the copy's cluster is claimed (refcount durable), written and flushed, then
 * each snapshot L1 entry switches to it in one 8-byte write; the old cluster's L2 use is gone
 * before the refcount step lowers its refcount. Without a free cluster, the L1 entries are
 * emptied instead (the whole range the table mapped is lost, and reported).
 */
import { ROLE_L1 } from './expected.ts';
import type { CheckFindings } from './findings.ts';
import { claimFreeRun } from './free-space.ts';
import type { ReferenceScan } from './scan.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { view } from '../format/bytes.ts';
import { decodeL1, decodeL2, encodeL1, encodeL2 } from '../format/entries.ts';
import { MAX_L1_BYTES } from '../format/limits.ts';
import type { Qcow2Image } from '../image/image.ts';
import type { RepairLoss } from '../model.ts';

interface Replacement {
  /** Where the copy lives; 0 when the L1 entries are emptied instead. */
  to: number;
  /** Entry indexes the copy empties (all of them without a copy). */
  emptied: number[];
}

/** Returns how many L1 entries changed. */
export function repairOverwrittenL2Tables(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings, losses: RepairLoss[]): number {
  if (scan.overwrittenL2.length === 0) return 0;
  const replacements = new Map<number, Replacement>();
  for (const l2Offset of scan.overwrittenL2) {
    const references = scan.l2Tables.get(l2Offset)?.total ?? 0;
    if (references === 0 || references > scan.expected.max) continue;
    replacements.set(l2Offset, copyKeepingSoundEntries(image, scan, l2Offset, references, findings));
  }
  return switchSnapshotL1Entries(image, scan, replacements, findings, losses);
}

function copyKeepingSoundEntries(image: Qcow2Image, scan: ReferenceScan, l2Offset: number, references: number, findings: CheckFindings): Replacement {
  const { file, clusterBytes, l2Format } = image;
  const all = Array.from({ length: image.l2Entries }, (_, index) => index);
  const claimed = claimFreeRun(image, scan, 1);
  if (claimed === null) {
    findings.note(`ERROR no free cluster for a repaired copy of the L2 table at 0x${l2Offset.toString(16)}; the snapshots lose all it mapped`);
    return { to: 0, emptied: all };
  }
  const bytes = readZeroFilled(file, l2Offset, clusterBytes);
  const table = view(bytes);
  const fileSize = file.size();
  const emptied: number[] = [];
  const zeroFlag = image.version === 3 && !l2Format.extendedL2;
  for (const index of all) {
    const position = index * image.l2EntryBytes;
    if (isSound(table, position, image, fileSize)) continue;
    emptied.push(index);
    encodeL2(table, position, l2Format, { hostOffset: 0, copied: false, zero: zeroFlag, allocMask: 0, zeroMask: l2Format.extendedL2 ? 0xffff_ffff : 0 });
  }
  file.write(bytes, claimed);
  file.flush();
  // claimFreeRun set refcount 1: as many as L1 entries will name the copy, before any does (a rebuild counts them itself).
  if (references > 1 && scan.rebuildReasons.length === 0) raiseRefcount(image, scan, claimed / clusterBytes, references);
  return { to: claimed, emptied };
}

function raiseRefcount(image: Qcow2Image, scan: ReferenceScan, cluster: number, refcount: number): void {
  const block = scan.stored.readBlock(Math.floor(cluster / scan.stored.entriesPerBlock));
  scan.stored.set(block, cluster % scan.stored.entriesPerBlock, refcount);
  image.file.write(block.bytes, block.offset);
  image.file.flush();
  scan.stored.clear();
}

/** An entry a table can hold: no reserved bits, an aligned cluster (or compressed data) inside the file. */
function isSound(table: DataView, position: number, image: Qcow2Image, fileSize: number): boolean {
  const { l2Format, clusterBytes } = image;
  const high = table.getUint32(position);
  const low = table.getUint32(position + 4);
  const zeroBits = l2Format.extendedL2 ? table.getUint32(position + 8) : 0;
  const allocBits = l2Format.extendedL2 ? table.getUint32(position + 12) : 0;
  if (high === 0 && low === 0 && zeroBits === 0 && allocBits === 0) return true;
  const entry = decodeL2(table, position, l2Format);
  if (entry.reservedBitsSet) return false;
  if (entry.kind === 'compressed') return zeroBits === 0 && allocBits === 0 && entry.hostOffset + entry.compressedSize - fileSize < clusterBytes;
  if ((zeroBits & allocBits) !== 0) return false;
  if (entry.kind === 'unallocated') return allocBits === 0;
  if (entry.hostOffset === 0) return true;
  return entry.hostOffset % clusterBytes === 0 && entry.hostOffset + clusterBytes <= fileSize;
}

function switchSnapshotL1Entries(image: Qcow2Image, scan: ReferenceScan, replacements: Map<number, Replacement>, findings: CheckFindings, losses: RepairLoss[]): number {
  const { file, clusterBytes } = image;
  const clusterSpan = clusterBytes;
  const tableSpan = image.l2Entries * clusterBytes;
  const fileSize = file.size();
  let changed = 0;
  for (const snapshot of image.snapshots) {
    const { l1TableOffset: l1Offset, l1Size } = snapshot;
    if (l1Size === 0 || l1Offset % clusterBytes !== 0 || l1Size * 8 > MAX_L1_BYTES || l1Offset + l1Size * 8 > fileSize) continue;
    const bytes = readZeroFilled(file, l1Offset, l1Size * 8);
    const table = view(bytes);
    const label = `snapshot ${snapshot.id} "${snapshot.name}"`;
    let writable = true;
    for (let cluster = Math.floor(l1Offset / clusterBytes); cluster * clusterBytes < l1Offset + l1Size * 8; cluster++) {
      if (scan.expected.rolesOf(cluster) !== ROLE_L1) writable = false;
    }
    const diskSize = snapshot.diskSize ?? image.virtualSize;
    for (let index = 0; index < l1Size; index++) {
      const { l2Offset } = decodeL1(table, index * 8);
      const replacement = l2Offset === 0 ? undefined : replacements.get(l2Offset);
      if (replacement === undefined) continue;
      if (!writable) {
        findings.note(`ERROR the L1 table of ${label} overlaps other metadata; its entry for the overwritten L2 table at 0x${l2Offset.toString(16)} was left as it is`);
        break;
      }
      encodeL1(table, index * 8, replacement.to, false);
      file.write(bytes.subarray(index * 8, index * 8 + 8), l1Offset + index * 8);
      changed++;
      const where = replacement.to === 0 ? 'emptied' : `switched to a repaired copy at 0x${replacement.to.toString(16)}`;
      findings.note(`Repairing L1 entry ${index} of ${label}: its L2 table at 0x${l2Offset.toString(16)} was overwritten by guest data; ${where}`);
      for (const range of mergeRanges(replacement.emptied.map((entry) => index * tableSpan + entry * clusterSpan), clusterSpan)) {
        const length = Math.min(range.length, diskSize - range.start);
        if (length <= 0) continue;
        losses.push({ what: 'range', 'snapshot-id': snapshot.id, 'snapshot-name': snapshot.name, 'guest-offset': range.start, length, reason: 'guest data overwrote the table that mapped it' });
      }
    }
  }
  if (changed > 0) file.flush();
  return changed;
}

function mergeRanges(starts: number[], span: number): { start: number; length: number }[] {
  const ranges: { start: number; length: number }[] = [];
  for (const start of starts) {
    const last = ranges[ranges.length - 1];
    if (last !== undefined && last.start + last.length === start) last.length += span;
    else ranges.push({ start, length: span });
  }
  return ranges;
}
