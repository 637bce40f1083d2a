/**
 * Dropping the active L2 tables that no longer name anything (every entry all zero bits: the
 * cluster reads through to the backing file), as an emptied overlay has them. The table is then no
 * longer the active state's, and its cluster is freed once the L1 without it is on disk (the
 * image's flush order: L1 entries, then refcount drops), so a crash leaves at worst a leak. An
 * emptied overlay keeps nothing but its header and tables near the start of its file, and the
 * free end can go (qemu-img commit leaves it as small).
 */
import type { Qcow2Image } from './image.ts';

/** How many tables were dropped; the caller flushes and then rebuilds the metadata cluster set. */
export function releaseEmptyTables(image: Qcow2Image): number {
  let released = 0;
  for (let l1Index = 0; l1Index < image.l1.size; l1Index++) {
    const l2Offset = image.l2OffsetAt(image.l1, l1Index);
    if (l2Offset === 0) continue;
    const table = image.l2Cache.get(l2Offset);
    if (!table.bytes.every((byte) => byte === 0)) continue;
    image.setL1Entry(l1Index, 0, false);
    image.refcounts.decrementLater(l2Offset / image.clusterBytes);
    released++;
  }
  return released;
}
