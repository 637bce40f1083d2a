/**
 * Check, step 3: the COPIED flag of the active L1 and L2 entries (qcow2.txt: set exactly when the
 * cluster's refcount is 1). A flag on a shared cluster lets a write change what a snapshot holds;
 * a missing flag only costs a copy. QEMU counts both as corruptions, and so do we.
 *
 * Repairs run in two passes so that a crash between them is harmless: 'clear' removes flags that
 * are wrong (before any refcount rises), 'set' adds missing ones (after refcounts are right, and
 * only where exactly one reference exists).
 */
import { ROLE_L1, ROLE_L2 } from './expected.ts';
import { hexEntry } from '../format/bytes.ts';
import type { CheckFindings } from './findings.ts';
import type { ReferenceScan } from './scan.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { view } from '../format/bytes.ts';
import { decodeL1, decodeL2, OFLAG_COPIED_HI } from '../format/entries.ts';
import type { Qcow2Image } from '../image/image.ts';
import { OrderedTableReader } from '../io/ordered-reads.ts';

export type CopiedPass = 'report' | 'clear' | 'set';

/** Returns how many flags the pass changed ('report' changes none). */
export function checkCopiedFlags(
  image: Qcow2Image,
  scan: ReferenceScan,
  findings: CheckFindings,
  pass: CopiedPass,
  refcountOf: (cluster: number) => number,
): number {
  const { header, file, clusterBytes } = image;
  if (header.l1Size === 0) return 0;
  const fileSize = file.size();
  const l1Bytes = readZeroFilled(file, header.l1TableOffset, header.l1Size * 8);
  const l1 = view(l1Bytes);
  const visited = new Set<number>();
  const tables = new OrderedTableReader(file, activeL2Tables(l1, header.l1Size, clusterBytes, fileSize), clusterBytes);
  let changed = 0;
  // As for L2 tables below: an L1 table that overlaps anything else (an l1_size that runs into
  // other clusters) is never written, or a flag "fix" would change that other structure or data.
  let l1Writable = true;
  for (let cluster = Math.floor(header.l1TableOffset / clusterBytes); cluster * clusterBytes < header.l1TableOffset + header.l1Size * 8; cluster++) {
    if (scan.expected.rolesOf(cluster) !== ROLE_L1) l1Writable = false;
  }
  let l1Refused = false;
  // Only where exactly one reference exists may a repair add the flag (never on a shared cluster).
  const mayFix = (copied: boolean, cluster: number): boolean =>
    pass === 'clear' ? copied : pass === 'set' ? !copied && scan.expected.get(cluster) === 1 : false;

  for (let index = 0; index < header.l1Size; index++) {
    const position = index * 8;
    const high = l1.getUint32(position);
    const low = l1.getUint32(position + 4);
    const { l2Offset, copied } = decodeL1(l1, position);
    if (l2Offset === 0) continue;
    const l2Cluster = Math.floor(l2Offset / clusterBytes);
    const refcount = refcountOf(l2Cluster);
    if ((refcount === 1) !== copied) {
      const detail = `OFLAG_COPIED L2 cluster: l1_index=${index} l1_entry=${hexEntry(high, low)} refcount=${refcount}`;
      if (pass === 'report') findings.corruption(`ERROR ${detail}`);
      else if (mayFix(copied, l2Cluster) && !l1Writable) l1Refused = true;
      else if (mayFix(copied, l2Cluster)) {
        l1.setUint32(position, (high ^ OFLAG_COPIED_HI) >>> 0);
        file.write(l1Bytes.subarray(position, position + 8), header.l1TableOffset + position);
        findings.note(`Repairing ${detail}`);
        changed++;
      }
    }
    if (l2Offset % clusterBytes !== 0 || l2Offset >= fileSize || visited.has(l2Offset)) continue;
    visited.add(l2Offset);
    changed += checkL2Flags(image, scan, findings, pass, refcountOf, l2Offset, mayFix, tables);
  }
  if (l1Refused) findings.note(`ERROR: the L1 table at 0x${header.l1TableOffset.toString(16)} overlaps other metadata or data; its COPIED flags were left as they are`);
  return changed;
}

/** The L2 tables the loop above visits, in the order it visits them (for reading neighbours together). */
function activeL2Tables(l1: DataView, l1Size: number, clusterBytes: number, fileSize: number): number[] {
  const offsets: number[] = [];
  const seen = new Set<number>();
  for (let index = 0; index < l1Size; index++) {
    const { l2Offset } = decodeL1(l1, index * 8);
    if (l2Offset === 0 || l2Offset % clusterBytes !== 0 || l2Offset >= fileSize || seen.has(l2Offset)) continue;
    seen.add(l2Offset);
    offsets.push(l2Offset);
  }
  return offsets;
}

function checkL2Flags(
  image: Qcow2Image,
  scan: ReferenceScan,
  findings: CheckFindings,
  pass: CopiedPass,
  refcountOf: (cluster: number) => number,
  l2Offset: number,
  mayFix: (copied: boolean, cluster: number) => boolean,
  tables: OrderedTableReader,
): number {
  const { file, clusterBytes } = image;
  // Valid until the next table is read: written back (if changed) before that.
  const tableBytes = tables.read(l2Offset);
  const table = view(tableBytes);
  // Never write an "L2 table" that is also some other structure: that would change the other one.
  const writable = scan.expected.rolesOf(l2Offset / clusterBytes) === ROLE_L2;
  let changed = 0;
  let refused = false;
  for (let index = 0; index < image.l2Entries; index++) {
    const position = index * image.l2EntryBytes;
    const high = table.getUint32(position);
    const low = table.getUint32(position + 4);
    if (high === 0 && low === 0) continue;
    // A plain data cluster's entry (no compression, reserved or zero bits) is read without decoding: most are.
    const plain = !image.l2Format.extendedL2 && (high & 0x7f00_0000) === 0 && (low & 0x1ff) === 0;
    const entry = plain ? null : decodeL2(table, position, image.l2Format);
    if (entry !== null && entry.kind !== 'normal' && entry.kind !== 'zero') continue;
    const hostOffset = entry === null ? (high & 0x00ff_ffff) * 0x1_0000_0000 + low : entry.hostOffset;
    const copied = (high & OFLAG_COPIED_HI) !== 0;
    if (hostOffset === 0) continue;
    const dataCluster = Math.floor(hostOffset / clusterBytes);
    const refcount = scan.hasDataFile ? 1 : refcountOf(dataCluster);
    if ((refcount === 1) === copied) continue;
    const detail = `OFLAG_COPIED data cluster: l2_entry=${hexEntry(high, low)} refcount=${refcount}`;
    if (pass === 'report') {
      findings.corruption(`ERROR ${detail}`);
    } else if (mayFix(copied, dataCluster)) {
      if (!writable) {
        refused = true;
        continue;
      }
      table.setUint32(position, (high ^ OFLAG_COPIED_HI) >>> 0);
      findings.note(`Repairing ${detail}`);
      changed++;
    }
  }
  if (refused) findings.note(`ERROR: L2 table at 0x${l2Offset.toString(16)} overlaps other metadata; its COPIED flags were left as they are`);
  if (changed > 0) file.write(tableBytes, l2Offset);
  return changed;
}
