/**
 * Repairing an L2 table only snapshots use that guest data overwrote: the cluster is the active
 * disk's data now (the guest's latest write), and as an L2 table it holds entries no table can
 * hold. QEMU raises the refcount and "fixes" the entries it can in place — which rewrites the
 * guest's data — and leaves the rest broken. Cowbell keeps the guest data and drops the
 * snapshot's pointer to the table instead: that part of the snapshot reads as zeros (or from
 * the backing file), and the check report says which snapshot and which range were lost. The
 * pointer is dropped (and flushed) before any refcount falls, in the refcount step later.
 */
import { ROLE_L1 } from './expected.ts';
import type { CheckFindings } from './findings.ts';
import type { ReferenceScan } from './scan.ts';
import { readZeroFilled } from './stored.ts';
import { view } from '../format/bytes.ts';
import { decodeL1 } from '../format/entries.ts';
import { MAX_L1_BYTES } from '../format/limits.ts';
import type { Qcow2Image } from '../image/image.ts';
import type { RepairLoss } from '../model.ts';

/** Returns how many L1 entries were dropped. */
export function dropOverwrittenL2Tables(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings, losses: RepairLoss[]): number {
  const overwritten = new Set(scan.overwrittenL2);
  if (overwritten.size === 0) return 0;
  const { file, clusterBytes } = image;
  const span = image.l2Entries * clusterBytes;
  const fileSize = file.size();
  let dropped = 0;
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
    for (let index = 0; index < l1Size; index++) {
      const { l2Offset } = decodeL1(table, index * 8);
      if (l2Offset === 0 || !overwritten.has(l2Offset)) continue;
      if (!writable) {
        findings.note(`ERROR the L1 table of ${label} overlaps other metadata; its entry for the overwritten L2 table at 0x${l2Offset.toString(16)} was left as it is`);
        break;
      }
      table.setUint32(index * 8, 0);
      table.setUint32(index * 8 + 4, 0);
      file.write(bytes.subarray(index * 8, index * 8 + 8), l1Offset + index * 8);
      dropped++;
      const guestOffset = index * span;
      const diskSize = snapshot.diskSize ?? image.virtualSize;
      const length = Math.max(0, Math.min(span, diskSize - guestOffset));
      findings.note(`Repairing L1 entry ${index} of ${label}: its L2 table at 0x${l2Offset.toString(16)} was overwritten by guest data; bytes ${guestOffset}-${guestOffset + length} of the snapshot are lost`);
      losses.push({ what: 'range', 'snapshot-id': snapshot.id, 'snapshot-name': snapshot.name, 'guest-offset': guestOffset, length, reason: 'guest data overwrote the table that mapped it' });
    }
  }
  if (dropped > 0) file.flush();
  return dropped;
}
