/**
 * The ext2/3/4 superblock fields the reader needs: enough to probe, name the volume, refuse a
 * geometry no reader should be handed, and find an inode.
 */
import { Qcow2Error } from '../../errors.ts';
import { crc32c } from '../crc32c.ts';
import type { VolumeBytes } from '../filesystem.ts';

export const SUPERBLOCK_OFFSET = 1024;
const SUPERBLOCK_BYTES = 1024;
const EXT_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;
const INCOMPAT_META_BG = 0x10;
const INCOMPAT_RECOVER = 0x4;
const INCOMPAT_CSUM_SEED = 0x2000;
const COMPAT_HAS_JOURNAL = 0x4;
const RO_COMPAT_SPARSE_SUPER = 0x1;
const COMPAT_SPARSE_SUPER2 = 0x200;
/**
 * The incompatible features read (the set libext2fs opens, its EXT2_LIB_FEATURE_INCOMPAT_SUPP):
 * filetype, recover, meta_bg, extents, 64bit, mmp, flex_bg, ea_inode, csum_seed, largedir,
 * inline_data, encrypt, casefold. Not compression, a journal device (no files) or dirdata (another
 * entry format): a volume with any other is refused.
 */
const READABLE_INCOMPAT = 0x2 | 0x4 | 0x10 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000;
/** The read-only-compatible features read (those libext2fs's read-write mount accepts: not btree_dir, snapshots or replicas). */
const RO_COMPAT_METADATA_CSUM = 0x400;
const RO_COMPAT_BIGALLOC = 0x200;
const KNOWN_RO_COMPAT = 0x1 | 0x2 | 0x8 | 0x10 | 0x20 | 0x40 | 0x100 | 0x200 | 0x400 | 0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000;

export interface ExtSuperblock {
  blockBytes: number;
  blocksCount: number;
  inodesCount: number;
  inodesPerGroup: number;
  firstDataBlock: number;
  inodeBytes: number;
  groupDescriptorBytes: number;
  is64Bit: boolean;
  label: string;
  blocksPerGroup: number;
  /** meta_bg: from this meta group on, a meta group's descriptors live in its own first group (0 without meta_bg: none do). */
  firstMetaGroup: number | null;
  /** Which groups hold a superblock copy: every group, the sparse_super series (0, 1, powers of 3, 5, 7), or sparse_super2's two. */
  superblockGroups: 'all' | 'sparse' | readonly number[];
  /**
   * The journal to replay before reading (needs_recovery: the filesystem was in use): its inode,
   * or 'external' for a journal on another device; null when nothing waits in a journal.
   */
  journalToReplay: number | 'external' | null;
  /**
   * metadata_csum: the seed every metadata checksum starts from (csum_seed's stored one, else the
   * CRC-32C of the filesystem UUID); null without metadata_csum.
   */
  checksumSeed: number | null;
}

export async function hasExtMagic(volume: VolumeBytes): Promise<boolean> {
  if (volume.length < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) return false;
  const magic = new Uint8Array(2);
  await volume.read(magic, SUPERBLOCK_OFFSET + 56);
  return new DataView(magic.buffer).getUint16(0, true) === EXT_MAGIC;
}

/** The superblock, checked against the volume and fixed limits (FILESYSTEM_CORRUPT otherwise). */
export async function readExtSuperblock(volume: VolumeBytes): Promise<ExtSuperblock> {
  if (volume.length < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) throw corrupt(`the volume (${volume.length} bytes) is too small for an ext filesystem`);
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  await volume.read(bytes, SUPERBLOCK_OFFSET);
  const view = new DataView(bytes.buffer);
  if (view.getUint16(56, true) !== EXT_MAGIC) throw new Qcow2Error('NO_FILESYSTEM', 'The volume holds no ext filesystem');
  const logBlockSize = view.getUint32(24, true);
  if (logBlockSize > 6) throw corrupt(`a block size of 2^${10 + logBlockSize} bytes`);
  const blockBytes = 1024 << logBlockSize;
  const incompat = view.getUint32(96, true);
  const is64Bit = (incompat & INCOMPAT_64BIT) !== 0;
  const blocksCount = view.getUint32(4, true) + (is64Bit ? view.getUint32(0x150, true) * 2 ** 32 : 0);
  const inodesCount = view.getUint32(0, true);
  const inodesPerGroup = view.getUint32(40, true);
  const blocksPerGroup = view.getUint32(32, true);
  const firstDataBlock = view.getUint32(20, true);
  const revision = view.getUint32(76, true);
  const roCompat = view.getUint32(100, true);
  if (revision > 1) throw unsupported(`revision ${revision}`);
  const inodeBytes = revision === 0 ? 128 : view.getUint16(88, true);
  const groupDescriptorBytes = is64Bit ? view.getUint16(254, true) : 32;
  if (blocksCount === 0 || blocksCount * blockBytes > volume.length) throw corrupt(`${blocksCount} blocks of ${blockBytes} bytes do not fit the ${volume.length}-byte volume`);
  if (inodesPerGroup === 0 || blocksPerGroup === 0 || inodesCount === 0) throw corrupt('zero inodes or blocks per group');
  // A block bitmap has a bit per cluster: with bigalloc a group holds many more blocks than that.
  const bitmapUnitsPerGroup = (roCompat & RO_COMPAT_BIGALLOC) !== 0 ? view.getUint32(36, true) : blocksPerGroup;
  if (inodesPerGroup > blockBytes * 8 || bitmapUnitsPerGroup === 0 || bitmapUnitsPerGroup > blockBytes * 8) throw corrupt('more inodes or blocks per group than a bitmap block can hold');
  if (inodeBytes < 128 || inodeBytes > blockBytes || (inodeBytes & (inodeBytes - 1)) !== 0) throw corrupt(`an inode size of ${inodeBytes} bytes`);
  if (groupDescriptorBytes < 32 || groupDescriptorBytes > 1024 || (groupDescriptorBytes & (groupDescriptorBytes - 1)) !== 0) throw corrupt(`a group descriptor size of ${groupDescriptorBytes} bytes`);
  if (firstDataBlock >= blocksCount) throw corrupt(`its first data block (${firstDataBlock}) lies past its last`);
  const compat = view.getUint32(92, true);
  if ((incompat & ~READABLE_INCOMPAT) !== 0) throw unsupported(`incompatible features 0x${(incompat & ~READABLE_INCOMPAT).toString(16)}`);
  if ((roCompat & ~KNOWN_RO_COMPAT) !== 0) throw unsupported(`read-only features 0x${(roCompat & ~KNOWN_RO_COMPAT).toString(16)}`);
  // A superblock failing its checksum is refused, as libext2fs's mount refuses it.
  if ((roCompat & RO_COMPAT_METADATA_CSUM) !== 0 && view.getUint32(0x3fc, true) !== crc32c(bytes.subarray(0, 0x3fc))) throw corrupt('its superblock fails its checksum');
  const firstMetaGroup = (incompat & INCOMPAT_META_BG) !== 0 ? view.getUint32(0x104, true) : null;
  const superblockGroups = (compat & COMPAT_SPARSE_SUPER2) !== 0 ? [0, view.getUint32(0x24c, true), view.getUint32(0x250, true)] : (roCompat & RO_COMPAT_SPARSE_SUPER) !== 0 ? 'sparse' : 'all';
  return {
    blockBytes,
    blocksCount,
    inodesCount,
    inodesPerGroup,
    firstDataBlock,
    inodeBytes,
    groupDescriptorBytes,
    is64Bit,
    label: cString(bytes.subarray(120, 136)),
    blocksPerGroup,
    firstMetaGroup,
    superblockGroups,
    journalToReplay: (incompat & INCOMPAT_RECOVER) === 0 || (compat & COMPAT_HAS_JOURNAL) === 0 ? null : view.getUint32(0xe0, true) === 0 ? 'external' : view.getUint32(0xe0, true),
    checksumSeed: (roCompat & RO_COMPAT_METADATA_CSUM) === 0 ? null : (incompat & INCOMPAT_CSUM_SEED) !== 0 ? view.getUint32(0x270, true) : crc32c(bytes.subarray(0x68, 0x78)),
  };
}

/** Whether two superblocks place every group, inode table and inode alike (their counts of free blocks and the like aside). */
export function sameGeometry(a: ExtSuperblock, b: ExtSuperblock): boolean {
  const groupsA = a.superblockGroups;
  const groupsB = b.superblockGroups;
  const sameGroups = typeof groupsA === 'string' || typeof groupsB === 'string' ? groupsA === groupsB : groupsA.length === groupsB.length && groupsA.every((group, index) => group === groupsB[index]);
  return (
    sameGroups &&
    a.blockBytes === b.blockBytes &&
    a.blocksCount === b.blocksCount &&
    a.inodesCount === b.inodesCount &&
    a.inodesPerGroup === b.inodesPerGroup &&
    a.firstDataBlock === b.firstDataBlock &&
    a.inodeBytes === b.inodeBytes &&
    a.groupDescriptorBytes === b.groupDescriptorBytes &&
    a.is64Bit === b.is64Bit &&
    a.blocksPerGroup === b.blocksPerGroup &&
    a.firstMetaGroup === b.firstMetaGroup
  );
}

function isPowerOf(value: number, base: number): boolean {
  let power = 1;
  while (power < value) power *= base;
  return power === value;
}

function groupHasSuperblock(superblock: ExtSuperblock, group: number): boolean {
  const { superblockGroups } = superblock;
  if (superblockGroups === 'all') return true;
  if (superblockGroups !== 'sparse') return group === 0 || superblockGroups.slice(1).includes(group);
  return group <= 1 || isPowerOf(group, 3) || isPowerOf(group, 5) || isPowerOf(group, 7);
}

/**
 * The volume offset of group `group`'s descriptor. Without meta_bg (and for the meta groups before
 * s_first_meta_bg) the descriptors follow the superblock's block in one run; with meta_bg each meta
 * group (the groups one descriptor block covers) keeps its block at the start of its first group,
 * after that group's superblock copy if it has one.
 */
export function groupDescriptorOffset(superblock: ExtSuperblock, group: number): number {
  const { blockBytes, groupDescriptorBytes, firstDataBlock, blocksPerGroup, firstMetaGroup } = superblock;
  const perBlock = blockBytes / groupDescriptorBytes;
  const metaGroup = Math.floor(group / perBlock);
  const within = (group % perBlock) * groupDescriptorBytes;
  // The run starts in the block after the superblock's (byte 1024): block 2 with 1 KiB blocks, also
  // with bigalloc, where the first data block is 0 (firstDataBlock + 1 would be the superblock's).
  if (firstMetaGroup === null || metaGroup < firstMetaGroup) return (Math.floor(1024 / blockBytes) + 1) * blockBytes + group * groupDescriptorBytes;
  const firstGroup = metaGroup * perBlock;
  let block = firstDataBlock + firstGroup * blocksPerGroup;
  // With 1 KiB blocks and bigalloc group 0 starts at block 0 though the superblock is in block 1.
  if (block === 0 && blockBytes === 1024) block = 1;
  if (groupHasSuperblock(superblock, firstGroup)) block += 1;
  return block * blockBytes + within;
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
}

function unsupported(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_UNSUPPORTED', `The ext filesystem uses what Cowbell cannot read: ${detail}`);
}

export function corrupt(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `The ext filesystem is damaged: ${detail}`);
}
