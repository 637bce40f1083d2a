/**
 * Where an XFS volume's structures lie (found through the reader's own modules on the undamaged
 * volume) and seeded-random damage to them: superblock fields, inode cores and forks, folder
 * blocks, extent tree blocks and symlink blocks, with values chosen to reach the checks
 * (zero, one, all ones, sizes and offsets near the structure's own).
 */
import { crc32c } from '../../../../src/shared/qcow2/files/crc32c.ts';
import { fieldPatch } from '../field-damage.ts';
import type { Patch } from '../ntfs/ntfs-mutations.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import type { SeededRandom } from '../../../helpers/seeded-random.ts';
import { xfsBlockMap } from '../../../../src/shared/qcow2/files/xfs/xfs-extents.ts';
import { FORMAT_BTREE, FORMAT_EXTENTS, inodeOffset, XfsInodeTable } from '../../../../src/shared/qcow2/files/xfs/xfs-inodes.ts';
import { readXfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';

/** One structure a walk reads: where it lies, its size, and where its CRC-32C is (version 5), or null. */
export interface XfsStructure {
  offset: number;
  size: number;
  checksumAt: number | null;
}

export interface XfsStructures {
  inodes: XfsStructure[];
  /** Folder data blocks, extent tree blocks and symlink extents. */
  blocks: XfsStructure[];
  /** Of those, the extent tree blocks. */
  treeBlocks: XfsStructure[];
}

/** Where a folder's data space ends, in its own offsets (its hash index lies beyond). */
const FOLDER_DATA_BYTES = 32 * 2 ** 30;

/** The structures of the volume in `bytes` that a walk reads: `inodeNumbers` (every entry's, from the manifest) and the root's. */
export async function findXfsStructures(bytes: Uint8Array, inodeNumbers: readonly number[]): Promise<XfsStructures> {
  const volume = memoryVolumeBytes(bytes);
  const superblock = await readXfsSuperblock(volume);
  const v5 = superblock.version === 5;
  const { blockBytes, folderBlockBytes } = superblock;
  const table = new XfsInodeTable(volume, superblock);
  const structures: XfsStructures = { inodes: [], blocks: [], treeBlocks: [] };
  for (const number of new Set([superblock.rootInode, ...inodeNumbers])) {
    structures.inodes.push({ offset: inodeOffset(superblock, number), size: superblock.inodeBytes, checksumAt: v5 ? 100 : null });
    const inode = await table.inode(number);
    if (inode.format !== FORMAT_EXTENTS && inode.format !== FORMAT_BTREE) continue;
    const map = await xfsBlockMap(volume, superblock, inode);
    for (const block of map.nodeBlocks) structures.treeBlocks.push({ offset: block * blockBytes, size: blockBytes, checksumAt: v5 ? 64 : null });
    const type = inode.mode & 0o170000;
    if (type === 0o120000) {
      for (const run of map.runs) structures.blocks.push({ offset: run.volumeBlock * blockBytes, size: run.count * blockBytes, checksumAt: v5 ? 12 : null });
    } else if (type === 0o040000) {
      // The data space's folder blocks that lie whole in one run (a few per run: enough to reach every form).
      const perFolderBlock = folderBlockBytes / blockBytes;
      for (const run of map.runs) {
        if (run.fileBlock * blockBytes >= FOLDER_DATA_BYTES) continue;
        for (let at = 0; at + perFolderBlock <= run.count && at < 64 * perFolderBlock; at += perFolderBlock) {
          if ((run.fileBlock + at) % perFolderBlock !== 0) continue;
          structures.blocks.push({ offset: (run.volumeBlock + at) * blockBytes, size: folderBlockBytes, checksumAt: v5 ? 4 : null });
        }
      }
    }
  }
  structures.blocks.push(...structures.treeBlocks);
  return structures;
}

/**
 * One damage: 1–3 big-endian field writes on one structure the walk reaches, its CRC-32C written
 * again after (version 5; now and then left to fail) so the damage reaches the checks behind it.
 */
export function randomXfsDamage(bytes: Uint8Array, structures: XfsStructures, random: SeededRandom): Patch[] {
  const kind = random.int(0, 10);
  if (kind === 0) return [fieldPatch(random, 0, SUPERBLOCK_FIELDS[random.int(0, SUPERBLOCK_FIELDS.length)] ?? 4, 512, false)];
  let structure: XfsStructure;
  let position: number;
  if (kind <= 4) {
    structure = structures.inodes[random.int(0, structures.inodes.length)]!;
    // Mostly the core's fields (mode, format, size, fork offset, extent count, own number), else the fork.
    position = random.int(0, 2) === 0 ? (INODE_FIELDS[random.int(0, INODE_FIELDS.length)] ?? 2) : 100 + random.int(0, structure.size - 100);
  } else {
    const pool = kind <= 6 && structures.treeBlocks.length > 0 ? structures.treeBlocks : structures.blocks;
    structure = pool[random.int(0, pool.length)]!;
    position = random.int(0, 3) === 0 ? random.int(0, 80) : random.int(0, structure.size);
  }
  const patches = Array.from({ length: 1 + random.int(0, 2) }, () => fieldPatch(random, structure.offset, position, structure.size, false));
  if (structure.checksumAt === null || random.int(0, 10) === 0) return patches;
  const copy = bytes.slice(structure.offset, structure.offset + structure.size);
  for (const patch of patches) copy.set(patch.bytes, patch.offset - structure.offset);
  rewriteChecksum(copy, 0, structure.size, structure.checksumAt);
  return [...patches, { offset: structure.offset + structure.checksumAt, bytes: [...copy.subarray(structure.checksumAt, structure.checksumAt + 4)] }];
}

/** Writes the CRC-32C of the structure of `size` bytes at `offset` into its field at `at`, as XFS does (inverted, little-endian, over the bytes with the field zeroed). */
export function rewriteChecksum(bytes: Uint8Array, offset: number, size: number, at: number): void {
  const structure = bytes.subarray(offset, offset + size);
  structure.fill(0, at, at + 4);
  const checksum = ~crc32c(structure.subarray(at), crc32c(structure.subarray(0, at))) >>> 0;
  new DataView(structure.buffer, structure.byteOffset, structure.byteLength).setUint32(at, checksum, true);
}

/** blocksize, dblocks, rootino, agblocks, agcount, versionnum, sectsize/inodesize, the log2 fields, dirblklog, features. */
const SUPERBLOCK_FIELDS = [4, 8, 48, 56, 84, 88, 96, 100, 102, 104, 106, 120, 122, 123, 124, 192, 200, 216, 220];
/** mode, version/format, size, nblocks, nextents, forkoff, flags, flags2, own number. */
const INODE_FIELDS = [2, 4, 5, 24, 56, 64, 76, 82, 90, 120, 124, 152];
