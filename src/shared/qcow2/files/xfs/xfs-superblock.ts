/**
 * The XFS superblock (the first sector of allocation group 0) as the reader needs it: the geometry
 * that turns inode and block numbers into places on the volume, checked against the volume and
 * against itself before anything else is read, and the features that change what the reader meets.
 * Facts from the XFS on-disk format (xfs_format.h, "XFS Algorithms & Data Structures").
 */
import type { VolumeBytes } from '../filesystem.ts';
import { corrupt, uint16, uint32, uint64, unsupported } from './xfs-bytes.ts';

const XFS_MAGIC = 0x58465342; // "XFSB"
const SUPERBLOCK_BYTES = 512;

/** sb_versionnum: the version in its low nibble, and the version-4 feature bits above. */
const VERSION_MASK = 0xf;
const VERSION_DIRV2 = 0x2000;
const VERSION_BORG = 0x4000; // ASCII case-insensitive names
const VERSION_MOREBITS = 0x8000;
/** sb_features2 (version 4 with MOREBITS): the folder entries' file type byte. */
const FEATURES2_FTYPE = 0x200;

/** sb_features_incompat (version 5). */
const INCOMPAT_FTYPE = 1 << 0;
const INCOMPAT_SPINODES = 1 << 1;
const INCOMPAT_META_UUID = 1 << 2;
const INCOMPAT_BIGTIME = 1 << 3;
const INCOMPAT_NEEDSREPAIR = 1 << 4;
const INCOMPAT_NREXT64 = 1 << 5;
const INCOMPAT_EXCHRANGE = 1 << 6;
const INCOMPAT_PARENT = 1 << 7;
/**
 * What the reader reads: the file type byte, sparse inode chunks (found by number as any inode),
 * a metadata UUID, 64-bit times, 64-bit extent counts; file-range exchange and parent pointers
 * change only the log and extended attributes. Anything else (the metadata directory tree of
 * newer kernels, and whatever comes next) is refused rather than misread.
 */
const READABLE_INCOMPAT = INCOMPAT_FTYPE | INCOMPAT_SPINODES | INCOMPAT_META_UUID | INCOMPAT_BIGTIME | INCOMPAT_NREXT64 | INCOMPAT_EXCHRANGE | INCOMPAT_PARENT;

export interface XfsSuperblock {
  version: 4 | 5;
  blockBytes: number;
  /** Blocks of the data device (the volume's XFS part). */
  dataBlocks: number;
  /** Blocks per allocation group (the last may hold fewer), and log2 of that rounded up: block numbers keep the group above it. */
  groupBlocks: number;
  groupBlockBits: number;
  groupCount: number;
  inodeBytes: number;
  /** log2 of inodes per block: inode numbers keep the block above it. */
  inodesPerBlockBits: number;
  rootInode: number;
  /** A folder block is this many bytes (a power-of-two multiple of the block). */
  folderBlockBytes: number;
  /** Folder entries carry a file type byte. */
  hasFileType: boolean;
  /** Times are 64-bit nanosecond counts (bigtime) rather than seconds and nanoseconds. */
  bigTime: boolean;
  /** Inodes carry a 64-bit data-fork extent count (nrext64). */
  largeExtentCounts: boolean;
  /** Names are looked up without regard to ASCII case (mkfs -n version=ci). */
  asciiCaseInsensitive: boolean;
  /** Where the internal log lies (volume blocks), or null when the log is on another device. */
  log: { firstBlock: number; blocks: number } | null;
  /** sb_features_log_incompat: the log holds records that need newer code to replay (so it is not clean). */
  logIncompatible: number;
  /** The filesystem's UUID (log records carry it) and the one its metadata carries (the same unless changed after mkfs: meta_uuid). */
  uuid: Uint8Array;
  metaUuid: Uint8Array;
  /** sb_inoalignmt: inode chunks are aligned to this many blocks (it decides the inode cluster size). */
  inodeAlignmentBlocks: number;
  label: string;
}

export async function hasXfsMagic(volume: VolumeBytes): Promise<boolean> {
  if (volume.length < SUPERBLOCK_BYTES) return false;
  const magic = new Uint8Array(4);
  await volume.read(magic, 0);
  return uint32(magic, 0) === XFS_MAGIC;
}

/** The superblock, checked (FILESYSTEM_CORRUPT when it contradicts itself or the volume; FILESYSTEM_UNSUPPORTED for what is not read). */
export async function readXfsSuperblock(volume: VolumeBytes): Promise<XfsSuperblock> {
  if (volume.length < SUPERBLOCK_BYTES) throw corrupt(`the volume (${volume.length} bytes) is too small for XFS`);
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  await volume.read(bytes, 0);
  if (uint32(bytes, 0) !== XFS_MAGIC) throw corrupt('its superblock has no XFS signature');
  const versionField = uint16(bytes, 100);
  const version = versionField & VERSION_MASK;
  if (version !== 4 && version !== 5) throw unsupported(`superblock version ${version}`);
  const blockBytes = uint32(bytes, 4);
  const sectorBytes = uint16(bytes, 102);
  const inodeBytes = uint16(bytes, 104);
  const inodesPerBlock = uint16(bytes, 106);
  const blockBits = bytes[120] as number;
  const sectorBits = bytes[121] as number;
  const inodeBits = bytes[122] as number;
  const inodesPerBlockBits = bytes[123] as number;
  const groupBlockBits = bytes[124] as number;
  if (blockBits < 9 || blockBits > 16 || blockBytes !== 2 ** blockBits) throw corrupt(`a block of ${blockBytes} bytes (log2 ${blockBits})`);
  if (sectorBits < 9 || sectorBits > 15 || sectorBytes !== 2 ** sectorBits || sectorBytes > blockBytes) throw corrupt(`a sector of ${sectorBytes} bytes`);
  if (inodeBits < 8 || inodeBits > 11 || inodeBytes !== 2 ** inodeBits || inodeBytes > blockBytes) throw corrupt(`inodes of ${inodeBytes} bytes`);
  if (inodesPerBlock !== blockBytes / inodeBytes || inodesPerBlockBits !== blockBits - inodeBits) throw corrupt(`${inodesPerBlock} inodes in a block of ${blockBytes} bytes`);
  if (version === 5 && inodeBytes < 512) throw corrupt(`version 5 inodes of ${inodeBytes} bytes (at least 512)`);
  const dataBlocks = uint64(bytes, 8, 'the block count');
  const groupBlocks = uint32(bytes, 84);
  const groupCount = uint32(bytes, 88);
  if (groupBlocks < 16 || groupBlockBits > 31 || 2 ** groupBlockBits < groupBlocks || 2 ** (groupBlockBits - 1) >= groupBlocks) {
    throw corrupt(`allocation groups of ${groupBlocks} blocks (log2 ${groupBlockBits})`);
  }
  if (groupCount === 0 || dataBlocks > groupCount * groupBlocks || dataBlocks <= (groupCount - 1) * groupBlocks) {
    throw corrupt(`${groupCount} allocation groups of ${groupBlocks} blocks for ${dataBlocks} blocks`);
  }
  // The volume may be larger than the filesystem (a partition grown, not the filesystem), never smaller.
  if (dataBlocks * blockBytes > volume.length) throw corrupt(`${dataBlocks} blocks of ${blockBytes} bytes, more than the volume's ${volume.length} bytes`);
  if ((bytes[126] as number) !== 0) throw corrupt('mkfs.xfs did not finish making it');
  const dirBlockBits = bytes[192] as number;
  if (blockBits + dirBlockBits > 16) throw corrupt(`folder blocks of 2^${blockBits + dirBlockBits} bytes`);

  let hasFileType: boolean;
  let bigTime = false;
  let largeExtentCounts = false;
  let logIncompatible = 0;
  if (version === 4) {
    if ((versionField & VERSION_DIRV2) === 0) throw unsupported('version 1 folders (IRIX-era XFS)');
    // Old kernels could leave features2's bits in sb_bad_features2 alone (a 32/64-bit padding bug): the kernel takes both.
    hasFileType = (versionField & VERSION_MOREBITS) !== 0 && ((uint32(bytes, 200) | uint32(bytes, 204)) & FEATURES2_FTYPE) !== 0;
  } else {
    const incompatible = uint32(bytes, 216);
    if ((incompatible & INCOMPAT_NEEDSREPAIR) !== 0) throw corrupt('xfs_repair marked it as needing repair (run xfs_repair in the guest)');
    const unknown = incompatible & ~READABLE_INCOMPAT;
    if (unknown !== 0) throw unsupported(`incompatible features 0x${(unknown >>> 0).toString(16)}`);
    hasFileType = (incompatible & INCOMPAT_FTYPE) !== 0;
    bigTime = (incompatible & INCOMPAT_BIGTIME) !== 0;
    largeExtentCounts = (incompatible & INCOMPAT_NREXT64) !== 0;
    logIncompatible = uint32(bytes, 220);
  }

  const superblock: XfsSuperblock = {
    version,
    blockBytes,
    dataBlocks,
    groupBlocks,
    groupBlockBits,
    groupCount,
    inodeBytes,
    inodesPerBlockBits,
    rootInode: 0,
    folderBlockBytes: blockBytes * 2 ** dirBlockBits,
    hasFileType,
    bigTime,
    largeExtentCounts,
    asciiCaseInsensitive: (versionField & VERSION_BORG) !== 0,
    log: null,
    logIncompatible,
    uuid: bytes.slice(32, 48),
    metaUuid: version === 5 && (uint32(bytes, 216) & INCOMPAT_META_UUID) !== 0 ? bytes.slice(248, 264) : bytes.slice(32, 48),
    inodeAlignmentBlocks: uint32(bytes, 180),
    label: labelOf(bytes.subarray(108, 120)),
  };
  superblock.rootInode = uint64(bytes, 56, 'the root inode');
  const logStart = uint64(bytes, 48, 'the log start');
  const logBlocks = uint32(bytes, 96);
  if (logStart !== 0) {
    const firstBlock = volumeBlockOf(superblock, logStart, logBlocks, 'the log');
    superblock.log = { firstBlock, blocks: logBlocks };
  }
  return superblock;
}

/**
 * A block number as XFS writes it in extents and pointers (the group above groupBlockBits, the
 * block within it below) as a block of the volume, checked: `count` blocks from it lie in one
 * group of the filesystem.
 */
export function volumeBlockOf(superblock: XfsSuperblock, fsBlock: number, count: number, what: string): number {
  const span = 2 ** superblock.groupBlockBits;
  const group = Math.floor(fsBlock / span);
  const inGroup = fsBlock - group * span;
  const block = group * superblock.groupBlocks + inGroup;
  if (group >= superblock.groupCount || inGroup + count > superblock.groupBlocks || block + count > superblock.dataBlocks || count < 1) {
    throw corrupt(`${what} lies at block ${fsBlock} (${count} blocks), outside the filesystem`);
  }
  return block;
}

/** Whether two superblocks place everything alike (files-diff may then compare their blocks in place). */
export function sameGeometry(a: XfsSuperblock, b: XfsSuperblock): boolean {
  return (
    a.version === b.version &&
    a.blockBytes === b.blockBytes &&
    a.dataBlocks === b.dataBlocks &&
    a.groupBlocks === b.groupBlocks &&
    a.groupCount === b.groupCount &&
    a.inodeBytes === b.inodeBytes &&
    a.rootInode === b.rootInode &&
    a.folderBlockBytes === b.folderBlockBytes &&
    a.hasFileType === b.hasFileType &&
    a.bigTime === b.bigTime &&
    a.largeExtentCounts === b.largeExtentCounts
  );
}

function labelOf(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end)).trim();
}
