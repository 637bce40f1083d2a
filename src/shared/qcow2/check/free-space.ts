/**
 * Free clusters for a repair to write into: nothing references them and their stored refcount is
 * 0 in a valid block, so raising that refcount first (and flushing) claims them crash-safely.
 */
import type { ReferenceScan } from './scan.ts';
import type { RefcountBlock } from './stored.ts';
import type { Qcow2Image } from '../image/image.ts';

export function* freeClusters(scan: ReferenceScan): Generator<number> {
  const { expected, stored } = scan;
  const isFree = (cluster: number): boolean =>
    stored.state(Math.floor(cluster / stored.entriesPerBlock)) === 'valid' && stored.get(cluster) === 0 && expected.get(cluster) === 0;
  for (let cluster = 1; cluster < expected.compareEnd; cluster++) if (isFree(cluster)) yield cluster;
  // Past the end of the file only where no entry points already (and only if those are known).
  const pointedAt = expected.pastEndReferenceEnd > 0 ? expected.pastEndClusters : new Set<number>();
  if (pointedAt === null) return;
  for (let cluster = expected.compareEnd; stored.state(Math.floor(cluster / stored.entriesPerBlock)) === 'valid'; cluster++) {
    if (stored.get(cluster) === 0 && !pointedAt.has(cluster)) yield cluster;
  }
}

/** Writes refcount `value` for each cluster in `clusters` (blocks read fresh, each written once), then flushes. */
export function setRefcounts(image: Qcow2Image, scan: ReferenceScan, clusters: Iterable<[cluster: number, value: number]>): void {
  const { stored } = scan;
  const blocks = new Map<number, RefcountBlock>();
  for (const [cluster, value] of clusters) {
    const index = Math.floor(cluster / stored.entriesPerBlock);
    const block = blocks.get(index) ?? stored.readBlock(index);
    stored.set(block, cluster % stored.entriesPerBlock, value);
    blocks.set(index, block);
  }
  for (const block of blocks.values()) image.file.write(block.bytes, block.offset);
  image.file.flush();
  stored.clear();
}

/**
 * Claims `count` free clusters in a row (refcount 1, durable) and returns the first one's byte
 * offset, or null when there is no such run. When the refcount structure is to be rebuilt from
 * the references anyway, the run is past the end of the file, and its refcounts are the rebuild's.
 */
export function claimFreeRun(image: Qcow2Image, scan: ReferenceScan, count: number): number | null {
  if (scan.rebuildReasons.length > 0) return runPastEnd(scan, count);
  let first = -1;
  let length = 0;
  for (const cluster of freeClusters(scan)) {
    if (length > 0 && cluster === first + length) length++;
    else {
      first = cluster;
      length = 1;
    }
    if (length === count) {
      const run: [number, number][] = [];
      for (let index = 0; index < count; index++) run.push([first + index, 1]);
      setRefcounts(image, scan, run);
      return first * image.clusterBytes;
    }
  }
  return null;
}

/** The first `count` clusters in a row past the end of the file that no entry points at (null if those are unknown). */
function runPastEnd(scan: ReferenceScan, count: number): number | null {
  const pointedAt = scan.expected.pastEndClusters;
  if (pointedAt === null) return null;
  let first = scan.expected.compareEnd;
  for (let cluster = first; cluster < first + count; cluster++) {
    if (pointedAt.has(cluster)) first = cluster + 1;
  }
  return first * scan.expected.clusterBytes;
}
