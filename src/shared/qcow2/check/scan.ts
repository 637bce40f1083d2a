/**
 * Check, step 1: walk every structure that references host clusters and count the refcount each
 * cluster should have, as QEMU's qcow2 check does (qcow2.txt "Host cluster management"): the
 * header, the active L1 table and its L2 tables, every snapshot's L1 and L2 tables (a cluster
 * reached from several L1 tables counts once per L1 table), compressed data (every host cluster
 * it touches), the snapshot table, the refcount table and blocks, the encryption header and the
 * bitmaps. Tables are read from the file, never trusted: each L2 table is read once however many
 * L1 entries name it, so a duplicate or a cycle cannot make the walk longer than the file.
 */
import {
  ExpectedRefcounts,
  ROLE_DATA,
  ROLE_HEADER,
  ROLE_L1,
  ROLE_L2,
  ROLE_OTHER_METADATA,
  ROLE_REFCOUNT_BLOCK,
  ROLE_REFCOUNT_TABLE,
} from './expected.ts';
import { scanBitmaps, scanEncryptionHeader, type ExtensionReferenceSink } from '../image/extension-references.ts';
import { hexEntry } from '../format/bytes.ts';
import type { CheckFindings } from './findings.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { StoredRefcounts } from './stored.ts';
import { view } from '../format/bytes.ts';
import { decodeL1, decodeL2, l1HasReservedBits } from '../format/entries.ts';
import { INCOMPAT_DATA_FILE, MAX_L1_BYTES } from '../format/limits.ts';
import type { Qcow2Image } from '../image/image.ts';
import { OrderedTableReader } from '../io/ordered-reads.ts';
import type { JobContext } from '../job-context.ts';

/** How many L1 tables reach an L2 table, and how many of those entries are in the active L1. */
export interface L2Reach {
  total: number;
  active: number;
}

export interface ReferenceScan {
  expected: ExpectedRefcounts;
  stored: StoredRefcounts;
  /** Every cluster-aligned L2 table inside the file, by host offset. */
  l2Tables: Map<number, L2Reach>;
  allocatedClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** Why the refcount table and blocks cannot be repaired in place (empty if they can; the first few). */
  rebuildReasons: string[];
  /** L1 tables (offset → entries) with an entry naming an L2 table past the end of the file. */
  l1TablesToFix: Map<number, number>;
  /** L2 tables with an entry a repair can make valid without changing guest data. */
  l2TablesToFix: Set<number>;
  /**
   * L2 tables only snapshots use whose cluster also holds guest data, and whose entries are broken:
   * guest data overwrote them. By host offset.
   */
  overwrittenL2: number[];
  /** Snapshot table entries to complete or drop (an image opened forCheck); a repair rewrites the table. */
  snapshotTableToFix: boolean;
  hasDataFile: boolean;
}

const MAX_REBUILD_REASONS = 8;
/** An L2 entry's first word with any of these bits set is not a plain data cluster: compressed or reserved bits (the COPIED flag may be set). */
const PLAIN_HIGH_MASK = 0x7f00_0000;

export function needRebuild(scan: ReferenceScan, reason: string): void {
  if (scan.rebuildReasons.length < MAX_REBUILD_REASONS) scan.rebuildReasons.push(reason);
}

export function scanReferences(image: Qcow2Image, findings: CheckFindings, job: JobContext): ReferenceScan {
  const header = image.header;
  const clusterBytes = image.clusterBytes;
  const file = image.file;
  const fileSize = file.size();
  const scan: ReferenceScan = {
    expected: new ExpectedRefcounts(fileSize, clusterBytes, header.refcountOrder),
    stored: StoredRefcounts.read(file, header.refcountTableOffset, header.refcountTableClusters, clusterBytes, header.refcountOrder),
    l2Tables: new Map(),
    allocatedClusters: 0,
    fragmentedClusters: 0,
    compressedClusters: 0,
    rebuildReasons: [],
    l1TablesToFix: new Map(),
    l2TablesToFix: new Set(),
    overwrittenL2: [],
    snapshotTableToFix: false,
    hasDataFile: (header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n,
  };
  const expected = scan.expected;
  job.progress('checking metadata', 0, 1, 'steps');
  expected.add(0, clusterBytes, ROLE_HEADER, 1, findings);

  scanL1(image, scan, findings, header.l1TableOffset, header.l1Size, true);
  scanSnapshotTableDamage(image, scan, findings);
  if (scan.hasDataFile && image.snapshots.length > 0) findings.corruption(`ERROR ${image.snapshots.length} snapshots in image with data file`);
  for (const snapshot of image.snapshots) {
    job.throwIfCancelled();
    const label = `ERROR snapshot ${snapshot.id} (${snapshot.name})`;
    if (snapshot.l1TableOffset % clusterBytes !== 0) {
      findings.corruption(`${label} l1_offset=0x${snapshot.l1TableOffset.toString(16)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
      continue;
    }
    if (snapshot.l1Size > MAX_L1_BYTES / 8) {
      findings.corruption(`${label} l1_size=0x${snapshot.l1Size.toString(16)}: L1 table is too large; snapshot table entry corrupted`);
      continue;
    }
    scanL1(image, scan, findings, snapshot.l1TableOffset, snapshot.l1Size, false);
  }
  if (header.snapshotCount > 0) expected.add(header.snapshotsOffset, image.snapshotTableBytes, ROLE_OTHER_METADATA, 1, findings);
  expected.add(header.refcountTableOffset, header.refcountTableClusters * clusterBytes, ROLE_REFCOUNT_TABLE, 1, findings);
  const extensions: ExtensionReferenceSink = {
    add: (offset, bytes) => expected.add(offset, bytes, ROLE_OTHER_METADATA, 1, findings),
    corruption: (message) => findings.corruption(message),
  };
  scanEncryptionHeader(image, extensions);
  scanBitmaps(image, extensions);

  scanL2Tables(image, scan, findings, job);
  scanRefcountBlocks(scan, findings);
  return scan;
}

function scanSnapshotTableDamage(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings): void {
  const damage = image.snapshotTableDamage;
  if (damage === null) return;
  scan.snapshotTableToFix = true;
  // qemu-img's words for an entry without the extra data v3 requires.
  for (const index of damage.incomplete) findings.corruption(`ERROR snapshot table entry ${index} is incomplete`);
  for (const entry of damage.dropped) findings.corruption(`ERROR snapshot table entry ${entry.index} cannot be used: it ${entry.reason}`);
}

function scanL1(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings, l1Offset: number, l1Size: number, active: boolean): void {
  if (l1Size === 0) return;
  const clusterBytes = image.clusterBytes;
  // Past the end of the file QEMU reads zeros: no entries, nothing more to count.
  if (!scan.expected.add(l1Offset, l1Size * 8, ROLE_L1, 1, findings)) return;
  const table = view(readZeroFilled(image.file, l1Offset, l1Size * 8));
  for (let index = 0; index < l1Size; index++) {
    const position = index * 8;
    const high = table.getUint32(position);
    const low = table.getUint32(position + 4);
    if (high === 0 && low === 0) continue;
    if (l1HasReservedBits(table, position)) findings.corruption(`ERROR found L1 entry with reserved bits set: ${hexEntry(high, low)}`);
    const { l2Offset } = decodeL1(table, position);
    // QEMU's readers treat an entry without an offset as unallocated, whatever its flags.
    if (l2Offset === 0) continue;
    if (!scan.expected.add(l2Offset, clusterBytes, ROLE_L2, 1, findings)) {
      scan.l1TablesToFix.set(l1Offset, l1Size);
      continue;
    }
    if (l2Offset % clusterBytes !== 0) {
      findings.corruption(`ERROR l2_offset=${l2Offset.toString(16)}: Table is not cluster aligned; L1 entry corrupted`);
      continue;
    }
    const reach = scan.l2Tables.get(l2Offset) ?? { total: 0, active: 0 };
    reach.total++;
    if (active) reach.active++;
    scan.l2Tables.set(l2Offset, reach);
  }
}

function scanL2Tables(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings, job: JobContext): void {
  const offsets = [...scan.l2Tables.keys()].sort((a, b) => a - b);
  // In file order, neighbours in one read: a big disk has tens of thousands of tables.
  const tables = new OrderedTableReader(image.file, offsets, image.clusterBytes);
  const broken: number[] = [];
  for (let done = 0; done < offsets.length; done++) {
    if (done % 64 === 0) {
      job.throwIfCancelled();
      job.progress('checking L2 tables', done, offsets.length, 'steps');
    }
    const l2Offset = offsets[done] ?? 0;
    const reach = scan.l2Tables.get(l2Offset) ?? { total: 0, active: 0 };
    const corruptionsBefore = findings.corruptions;
    scanL2(image, scan, findings, l2Offset, reach, tables);
    if (reach.active === 0 && findings.corruptions > corruptionsBefore) broken.push(l2Offset);
  }
  // Only once every data reference is counted does a cluster show it is guest data as well.
  for (const l2Offset of broken) {
    if ((scan.expected.rolesOf(l2Offset / image.clusterBytes) & ROLE_DATA) !== 0) scan.overwrittenL2.push(l2Offset);
  }
}

/** One L2 table, walked once; what it references counts once per L1 entry that reaches it. */
function scanL2(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings, l2Offset: number, reach: L2Reach, tables: OrderedTableReader): void {
  const clusterBytes = image.clusterBytes;
  const format = image.l2Format;
  const table = view(tables.read(l2Offset));
  const times = reach.total;
  const active = reach.active;
  const expected = scan.expected;
  let nextContiguous = 0;
  // Without extended L2 or a data file most entries are plain data clusters: counted without decoding.
  const plainEntries = !format.extendedL2 && !scan.hasDataFile;
  const fileSize = expected.fileSize;
  for (let index = 0; index < image.l2Entries; index++) {
    const position = index * image.l2EntryBytes;
    const high = table.getUint32(position);
    const low = table.getUint32(position + 4);
    if (plainEntries && (high & PLAIN_HIGH_MASK) === 0 && (low & 0x1ff) === 0) {
      const hostOffset = (high & 0x00ff_ffff) * 0x1_0000_0000 + low;
      if (hostOffset > 0 && hostOffset % clusterBytes === 0 && hostOffset < fileSize) {
        if (active > 0) {
          scan.allocatedClusters += active;
          if (nextContiguous !== 0 && hostOffset !== nextContiguous) scan.fragmentedClusters += active;
          nextContiguous = hostOffset + clusterBytes;
        }
        expected.addCluster(hostOffset / clusterBytes, ROLE_DATA, times, findings);
        continue;
      }
    }
    const zeroBits = format.extendedL2 ? table.getUint32(position + 8) : 0;
    const allocBits = format.extendedL2 ? table.getUint32(position + 12) : 0;
    if (high === 0 && low === 0 && zeroBits === 0 && allocBits === 0) continue;
    const entry = decodeL2(table, position, format);
    if (entry.kind !== 'compressed' && entry.reservedBitsSet) findings.corruption(`ERROR found l2 entry with reserved bits set: ${hexEntry(high, low)}`, times);

    if (entry.kind === 'compressed') {
      if (entry.copied) findings.corruption(`ERROR: coffset=0x${entry.hostOffset.toString(16)}: copied flag must never be set for compressed clusters`, times);
      if (scan.hasDataFile) {
        findings.corruption(`ERROR compressed cluster ${index} with data file, entry=0x${hexEntry(high, low)}`, times);
        continue;
      }
      if (zeroBits !== 0 || allocBits !== 0) {
        findings.corruption(`ERROR compressed cluster ${index} with non-zero subcluster allocation bitmap, entry=0x${hexEntry(high, low)}`, times);
        continue;
      }
      expected.add(entry.hostOffset, entry.compressedSize, ROLE_DATA, times, findings);
      // Compressed clusters are fragmented by nature (QEMU counts each one).
      scan.allocatedClusters += active;
      scan.compressedClusters += active;
      scan.fragmentedClusters += active;
      continue;
    }

    // In an external data file host offset 0 is a cluster like any other (decodeL2 tells it by its COPIED flag).
    const dataFileAtZero = scan.hasDataFile && entry.hostOffset === 0 && entry.kind === 'normal';
    const holdsCluster = (entry.kind === 'normal' || entry.kind === 'zero') && entry.hostOffset !== 0;
    if (!holdsCluster && !dataFileAtZero) {
      if (entry.kind === 'unallocated' && allocBits !== 0) {
        findings.corruption('ERROR: Unallocated cluster has non-zero subcluster allocation map', times);
      }
      continue;
    }
    const hostOffset = entry.hostOffset;
    if ((zeroBits & allocBits) !== 0) {
      findings.corruption(`ERROR offset=${hostOffset.toString(16)}: Allocated cluster has corrupted subcluster allocation bitmap`, times);
    }
    if (hostOffset % clusterBytes !== 0) {
      const containsData = format.extendedL2 ? allocBits !== 0 : entry.kind !== 'zero';
      if (containsData) {
        findings.corruption(`ERROR offset=${hostOffset.toString(16)}: Data cluster is not properly aligned; L2 entry corrupted.`, times);
      } else {
        findings.corruption(`ERROR offset=${hostOffset.toString(16)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`, times);
        scan.l2TablesToFix.add(l2Offset);
      }
    }
    if (active > 0) {
      scan.allocatedClusters += active;
      if (nextContiguous !== 0 && hostOffset !== nextContiguous) scan.fragmentedClusters += active;
      nextContiguous = hostOffset + clusterBytes;
    }
    // With an external data file, data clusters live there and have no refcount here.
    if (scan.hasDataFile) continue;
    if (!expected.add(hostOffset, clusterBytes, ROLE_DATA, times, findings)) scan.l2TablesToFix.add(l2Offset);
  }
}

/**
 * The refcount blocks, counted last so that a block another structure also uses shows up as a
 * refcount other than 1 (QEMU then rebuilds the whole refcount structure).
 */
function scanRefcountBlocks(scan: ReferenceScan, findings: CheckFindings): void {
  const stored = scan.stored;
  const clusterBytes = stored.clusterBytes;
  for (let index = 0; index < stored.tableEntries; index++) {
    const state = stored.state(index);
    if (state === 'none') continue;
    if (state === 'unaligned') {
      findings.corruption(`ERROR refcount block ${index} is not cluster aligned; refcount table entry corrupted`);
      needRebuild(scan, `refcount block ${index} is not cluster aligned`);
      continue;
    }
    if (state === 'reserved-bits') {
      findings.corruption(`ERROR refcount table entry ${index} has reserved bits set`);
      needRebuild(scan, `refcount table entry ${index} has reserved bits set`);
      continue;
    }
    if (state === 'outside') {
      findings.corruption(`ERROR refcount block ${index} is outside image`);
      needRebuild(scan, `refcount block ${index} is outside the file`);
      continue;
    }
    const offset = stored.blockOffset(index);
    scan.expected.add(offset, clusterBytes, ROLE_REFCOUNT_BLOCK, 1, findings);
    const count = scan.expected.get(offset / clusterBytes);
    if (count !== 1) {
      findings.corruption(`ERROR refcount block ${index} refcount=${count}`);
      needRebuild(scan, `refcount block ${index} overlaps other data`);
    }
  }
}
