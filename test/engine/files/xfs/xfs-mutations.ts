/**
 * Where an XFS volume's structures lie (found through the reader's own modules on the undamaged
 * volume) and seeded-random damage to them: superblock fields, inode cores and forks, folder
 * blocks, extent tree blocks and symlink blocks, with values chosen to reach the checks
 * (zero, one, all ones, sizes and offsets near the structure's own).
 */
import { fieldPatch } from '../field-damage.ts';
import type { Patch } from '../ntfs/ntfs-mutations.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import type { SeededRandom } from '../../../helpers/seeded-random.ts';
import { xfsBlockMap } from '../../../../src/shared/qcow2/files/xfs/xfs-extents.ts';
import { FORMAT_BTREE, FORMAT_EXTENTS, inodeOffset, XfsInodeTable } from '../../../../src/shared/qcow2/files/xfs/xfs-inodes.ts';
import { readXfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';

export interface XfsStructures {
  blockBytes: number;
  inodeBytes: number;
  /** Byte offsets of the inodes the walk reads, and of the blocks their forks map that are not plain file data. */
  inodes: number[];
  /** Folder blocks, extent tree blocks and symlink blocks. */
  blocks: number[];
  /** Of those, the extent tree blocks. */
  treeBlocks: number[];
}

/** The structures of the volume in `bytes` that a walk reads: `inodeNumbers` (every entry's, from the manifest) and the root's. */
export async function findXfsStructures(bytes: Uint8Array, inodeNumbers: readonly number[]): Promise<XfsStructures> {
  const volume = memoryVolumeBytes(bytes);
  const superblock = await readXfsSuperblock(volume);
  const table = new XfsInodeTable(volume, superblock);
  const structures: XfsStructures = { blockBytes: superblock.blockBytes, inodeBytes: superblock.inodeBytes, inodes: [], blocks: [], treeBlocks: [] };
  for (const number of new Set([superblock.rootInode, ...inodeNumbers])) {
    structures.inodes.push(inodeOffset(superblock, number));
    const inode = await table.inode(number);
    if (inode.format !== FORMAT_EXTENTS && inode.format !== FORMAT_BTREE) continue;
    const map = await xfsBlockMap(volume, superblock, inode);
    for (const block of map.nodeBlocks) structures.treeBlocks.push(block * superblock.blockBytes);
    // A regular file's data is not structure; a folder's and a link's blocks are.
    if ((inode.mode & 0o170000) === 0o100000) continue;
    for (const run of map.runs) for (let block = 0; block < Math.min(run.count, 64); block++) structures.blocks.push((run.volumeBlock + block) * superblock.blockBytes);
  }
  structures.blocks.push(...structures.treeBlocks);
  return structures;
}

/** One damage: 1–3 big-endian field writes on one structure the walk reaches. */
export function randomXfsDamage(structures: XfsStructures, random: SeededRandom): Patch[] {
  const kind = random.int(0, 10);
  if (kind === 0) return [fieldPatch(random, 0, SUPERBLOCK_FIELDS[random.int(0, SUPERBLOCK_FIELDS.length)] ?? 4, 512, false)];
  if (kind <= 4) {
    const inode = structures.inodes[random.int(0, structures.inodes.length)] ?? 0;
    // Mostly the core's fields (mode, format, size, fork offset, extent count, own number), else the fork.
    const position = random.int(0, 2) === 0 ? INODE_FIELDS[random.int(0, INODE_FIELDS.length)] ?? 2 : 100 + random.int(0, structures.inodeBytes - 100);
    return Array.from({ length: 1 + random.int(0, 2) }, () => fieldPatch(random, inode, position, structures.inodeBytes, false));
  }
  const pool = kind <= 6 && structures.treeBlocks.length > 0 ? structures.treeBlocks : structures.blocks;
  const block = pool[random.int(0, pool.length)] ?? 0;
  const position = random.int(0, 3) === 0 ? random.int(0, 80) : random.int(0, structures.blockBytes);
  return Array.from({ length: 1 + random.int(0, 2) }, () => fieldPatch(random, block, position, structures.blockBytes, false));
}

/** blocksize, dblocks, rootino, agblocks, agcount, versionnum, sectsize/inodesize, the log2 fields, dirblklog, features. */
const SUPERBLOCK_FIELDS = [4, 8, 48, 56, 84, 88, 96, 100, 102, 104, 106, 120, 122, 123, 124, 192, 200, 216, 220];
/** mode, version/format, size, nblocks, nextents, forkoff, flags, flags2, own number. */
const INODE_FIELDS = [2, 4, 5, 24, 56, 64, 76, 82, 90, 120, 124, 152];
