/**
 * Rebuilding the refcount structure when it cannot be trusted in place (blocks outside the file,
 * unaligned, or overlapping other data). New refcount blocks and a new refcount table are written
 * past the end of the file from the references the scan counted, made durable, and only then does
 * one header write switch to them. The old table and blocks are not counted in the new structure,
 * so the switch frees them in the same instant: a crash before it leaves the old image untouched,
 * a crash after it leaves the repaired one.
 */
import { Qcow2Error } from '../errors.ts';
import type { CheckFindings } from './findings.ts';
import { ROLE_REFCOUNT_BLOCK, ROLE_REFCOUNT_TABLE } from './expected.ts';
import type { ReferenceScan } from './scan.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { view } from '../format/bytes.ts';
import { encodeRefcountTableEntry, setRefcount } from '../format/entries.ts';
import { parseHeader, serializeFixedHeader } from '../format/header.ts';
import { MAX_REFTABLE_BYTES } from '../format/limits.ts';
import type { Qcow2Image } from '../image/image.ts';

export interface RebuiltLayout {
  tableOffset: number;
  tableClusters: number;
  firstCluster: number;
  clusters: number;
}

/** Why a rebuild would not be safe, or null. */
export function rebuildObstacle(scan: ReferenceScan): string | null {
  // The new structure goes past the end of the file, where such an entry would then point.
  if (scan.expected.pastEndReferenceEnd > 0) return 'entries point past the end of the file';
  return null;
}

/**
 * Writes the new structure and switches the header to it. The caller has called
 * forgetOldStructure (so that the scan's targets are the new refcounts) and checked rebuildObstacle.
 */
export function rebuildRefcountStructure(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings): RebuiltLayout {
  const { expected, stored } = scan;
  const clusterBytes = image.clusterBytes;
  findings.note('Rebuilding refcount structure');

  const perBlock = stored.entriesPerBlock;
  const start = expected.compareEnd;
  const usedBlocks = new Set<number>();
  for (let cluster = 0; cluster < start; cluster++) if (expected.target(cluster) > 0) usedBlocks.add(Math.floor(cluster / perBlock));
  // The new blocks and table describe themselves too: grow until the layout stops changing.
  let blockCount = 0;
  let tableClusters = 0;
  let blocks: number[];
  for (;;) {
    const newEnd = start + blockCount + tableClusters;
    const needed = new Set(usedBlocks);
    for (let cluster = start; cluster < newEnd; cluster++) needed.add(Math.floor(cluster / perBlock));
    blocks = [...needed].sort((a, b) => a - b);
    const tableEntries = (blocks[blocks.length - 1] ?? 0) + 1;
    const nextTableClusters = Math.max(1, Math.ceil((tableEntries * 8) / clusterBytes));
    if (blocks.length === blockCount && nextTableClusters === tableClusters) break;
    blockCount = blocks.length;
    tableClusters = nextTableClusters;
  }
  if (tableClusters * clusterBytes > MAX_REFTABLE_BYTES) {
    throw new Qcow2Error('NO_SPACE', 'The rebuilt refcount table would exceed QEMU\'s 8 MiB limit');
  }
  const end = start + blockCount + tableClusters;
  const tableOffset = (start + blockCount) * clusterBytes;
  const table = new Uint8Array(tableClusters * clusterBytes);
  const tableView = view(table);
  blocks.forEach((blockIndex, position) => {
    const blockOffset = (start + position) * clusterBytes;
    const block = new Uint8Array(clusterBytes);
    const blockView = view(block);
    const first = blockIndex * perBlock;
    for (let entry = 0; entry < perBlock; entry++) {
      const cluster = first + entry;
      const refcount = cluster >= start && cluster < end ? 1 : expected.target(cluster);
      if (refcount !== 0) setRefcount(block, blockView, entry, stored.order, refcount);
    }
    image.file.write(block, blockOffset);
    encodeRefcountTableEntry(tableView, blockIndex * 8, blockOffset);
  });
  image.file.write(table, tableOffset);
  image.file.flush();

  const header = parseHeader(readZeroFilled(image.file, 0, clusterBytes), image.file.size(), { forCheck: true });
  header.refcountTableOffset = tableOffset;
  header.refcountTableClusters = tableClusters;
  image.file.write(serializeFixedHeader(header), 0);
  image.file.flush();
  findings.note(`The new refcount table is at 0x${tableOffset.toString(16)} (${tableClusters} clusters), with ${blockCount} refcount blocks`);
  return { tableOffset, tableClusters, firstCluster: start, clusters: end - start };
}

/** The old refcount table and blocks: counted by the scan, but not part of the new structure. */
export function forgetOldStructure(image: Qcow2Image, scan: ReferenceScan): void {
  const { expected, stored } = scan;
  const clusterBytes = image.clusterBytes;
  const tableFirst = image.header.refcountTableOffset / clusterBytes;
  for (let cluster = tableFirst; cluster < tableFirst + image.header.refcountTableClusters; cluster++) {
    expected.subtract(cluster, 1, ROLE_REFCOUNT_TABLE);
  }
  for (let index = 0; index < stored.tableEntries; index++) {
    if (stored.state(index) === 'valid') expected.subtract(stored.blockOffset(index) / clusterBytes, 1, ROLE_REFCOUNT_BLOCK);
  }
}
