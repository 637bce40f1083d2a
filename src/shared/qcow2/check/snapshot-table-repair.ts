/**
 * Repairing a snapshot table the image cannot keep as it is (an image opened forCheck): entries
 * lacking the extra data version 3 requires are completed, and entries past the end of the file
 * (or too broken to read) are dropped, as qemu-img check -r all does — but Cowbell says which
 * snapshots were lost. Crash-safe order: the new table's clusters are claimed (refcount durable),
 * the table is written and flushed, then one header write switches count and offset together;
 * the old table's clusters become leaks that the refcount step lowers afterwards.
 */
import { claimFreeRun } from './free-space.ts';
import type { CheckFindings } from './findings.ts';
import type { ReferenceScan } from './scan.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { parseHeader, serializeFixedHeader } from '../format/header.ts';
import { completedExtraData, serializeSnapshotTable, type SnapshotEntry } from '../format/snapshot-table.ts';
import type { Qcow2Image } from '../image/image.ts';
import type { RepairLoss } from '../model.ts';

/** Returns true if the header now names a repaired table. */
export function repairSnapshotTable(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings, losses: RepairLoss[]): boolean {
  const damage = image.snapshotTableDamage;
  if (damage === null) return false;
  const incomplete = new Set(damage.incomplete);
  const kept = image.snapshots.map((entry, position) => (incomplete.has(position) ? completedExtraData(entry, image.virtualSize) : entry));
  const tableOffset = switchToSnapshotTable(image, scan, kept);
  if (tableOffset === null) {
    findings.note('ERROR no free space for a repaired snapshot table; the snapshot table was left as it is');
    return false;
  }
  for (const position of damage.incomplete) {
    const entry = image.snapshots[position];
    findings.note(`Repairing snapshot table entry ${position} is incomplete (snapshot ${entry?.id ?? '?'} "${entry?.name ?? '?'}": the extra data version 3 requires was added)`);
  }
  for (const dropped of damage.dropped) {
    const who = dropped.id === null ? 'an unknown snapshot' : `snapshot ${dropped.id} "${dropped.name ?? ''}"`;
    findings.note(`Repairing snapshot table entry ${dropped.index}: ${who} was removed because the entry ${dropped.reason}`);
    losses.push({ what: 'snapshot', 'snapshot-id': dropped.id, 'snapshot-name': dropped.name, reason: `its snapshot table entry ${dropped.reason}` });
  }
  if (kept.length > 0) findings.note(`The repaired snapshot table (${kept.length} snapshots) is at 0x${tableOffset.toString(16)}`);
  return true;
}

/**
 * Writes `entries` as a new snapshot table in claimed free clusters (durable), then switches the
 * header's count and offset to it in one write; the old table's clusters become leaks. Returns the
 * new table's offset (0 for no snapshots), or null where no free run could hold it (nothing written).
 */
export function switchToSnapshotTable(image: Qcow2Image, scan: ReferenceScan, entries: SnapshotEntry[]): number | null {
  const { file, clusterBytes } = image;
  let tableOffset = 0;
  if (entries.length > 0) {
    const bytes = serializeSnapshotTable(entries);
    const claimed = claimFreeRun(image, scan, Math.ceil(bytes.length / clusterBytes));
    if (claimed === null) return null;
    tableOffset = claimed;
    file.write(bytes, tableOffset);
    file.flush();
  }
  const header = parseHeader(readZeroFilled(file, 0, clusterBytes), file.size(), { forCheck: true });
  header.snapshotCount = entries.length;
  header.snapshotsOffset = tableOffset;
  file.write(serializeFixedHeader(header), 0);
  file.flush();
  return tableOffset;
}
