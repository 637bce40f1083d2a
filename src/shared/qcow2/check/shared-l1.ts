/**
 * Repairing a snapshot whose L1 table is another state's (the current state's, or an earlier
 * snapshot's): a crafted or damaged snapshot table. Raising the refcount leaves one table that two
 * states must both change in place, and every writer refuses it (QEMU's own repair fails there).
 * The snapshot gets its own copy of the table it reads now, so it keeps exactly that state; its
 * L2 tables then have one more user each, which the refcount step raises.
 * Crash-safe order: each copy's clusters are claimed (refcount durable) and written, then a new
 * snapshot table naming the copies, then one header write switches to it; the old table's clusters
 * become leaks the refcount step lowers. A crash before the switch leaves the damage as it was.
 */
import { claimFreeRun } from './free-space.ts';
import type { CheckFindings } from './findings.ts';
import type { ReferenceScan } from './scan.ts';
import { switchToSnapshotTable } from './snapshot-table-repair.ts';
import { alignUp } from '../format/bytes.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import type { Qcow2Image } from '../image/image.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';

/** The copied flag of an L1 entry (bit 63): never set in a snapshot's table. */
const COPIED_BYTE_MASK = 0x7f;

interface TableRange {
  start: number;
  end: number;
}

const overlapping = (a: TableRange, b: TableRange): boolean => a.start < b.end && b.start < a.end;

/** Positions in the snapshot list of the snapshots whose L1 table overlaps the current one's or an earlier snapshot's. */
export function snapshotsSharingL1(image: Qcow2Image): number[] {
  const { clusterBytes } = image;
  const fileSize = image.file.size();
  const ranges: TableRange[] = [];
  if (image.header.l1Size > 0) ranges.push({ start: image.header.l1TableOffset, end: image.header.l1TableOffset + image.header.l1Size * 8 });
  const sharing: number[] = [];
  image.snapshots.forEach((snapshot, position) => {
    if (snapshot.l1Size === 0 || snapshot.l1TableOffset === 0 || snapshot.l1TableOffset % clusterBytes !== 0) return;
    const range = { start: snapshot.l1TableOffset, end: snapshot.l1TableOffset + snapshot.l1Size * 8 };
    // A table past the end of the file is another repair's (the snapshot table's).
    if (range.end > fileSize) return;
    if (ranges.some((other) => overlapping(range, other))) sharing.push(position);
    else ranges.push(range);
  });
  return sharing;
}

/** Gives each snapshot sharing an L1 table a copy of its own; returns true if the header now names a new snapshot table. */
export function separateSharedL1Tables(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings): boolean {
  const sharing = snapshotsSharingL1(image);
  if (sharing.length === 0) return false;
  const { file, clusterBytes } = image;
  const entries: SnapshotEntry[] = image.snapshots.map((entry) => ({ ...entry }));
  for (const position of sharing) {
    const entry = entries[position];
    if (entry === undefined) continue;
    const table = readZeroFilled(file, entry.l1TableOffset, entry.l1Size * 8);
    for (let at = 0; at < table.length; at += 8) table[at] = (table[at] ?? 0) & COPIED_BYTE_MASK;
    const copy = new Uint8Array(alignUp(table.length, clusterBytes));
    copy.set(table);
    const offset = claimFreeRun(image, scan, copy.length / clusterBytes);
    if (offset === null) {
      findings.note('ERROR no free space for a copy of a shared L1 table; the snapshot table was left as it is');
      return false;
    }
    file.write(copy, offset);
    findings.note(`Repairing snapshot ${entry.id} "${entry.name}": its L1 table at 0x${entry.l1TableOffset.toString(16)} is another state's; it now has its own copy at 0x${offset.toString(16)} (it reads as before)`);
    entry.l1TableOffset = offset;
  }
  file.flush();
  if (switchToSnapshotTable(image, scan, entries) === null) {
    findings.note('ERROR no free space for a new snapshot table; the snapshot table was left as it is');
    return false;
  }
  return true;
}
