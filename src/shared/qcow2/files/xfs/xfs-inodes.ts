/**
 * XFS inodes: found by number alone (an inode number holds its allocation group, block and slot),
 * read and checked, and kept in a small cache. Version 1/2 inodes (version 4 filesystems) have a
 * 100-byte core, version 3 (version 5) 176 bytes with the inode's own number to check it by.
 */
import type { VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { checksumHolds, corrupt, int32, uint16, uint32, uint64 } from './xfs-bytes.ts';
import type { XfsSuperblock } from './xfs-superblock.ts';

const INODE_MAGIC = 0x494e; // "IN"
const CACHED_INODES = 2048;

/** di_format: where a fork's content is. */
export const FORMAT_DEVICE = 0;
export const FORMAT_LOCAL = 1;
export const FORMAT_EXTENTS = 2;
export const FORMAT_BTREE = 3;

/** di_flags: the content lies on the realtime device, not in the data blocks. */
export const REALTIME_FLAG = 0x1;

export interface XfsInode {
  number: number;
  mode: number;
  format: number;
  size: number;
  mtimeMs: number;
  flags: number;
  /** Data-fork extent records the inode claims (its extent list, or the leaves of its tree). */
  extentCount: number;
  /** The data fork: the inode's bytes after its core, up to the attribute fork. */
  dataFork: Uint8Array;
}

export class XfsInodeTable {
  private readonly cache = new GenerationalCache<number, XfsInode>(CACHED_INODES / 2);
  private readonly volume: VolumeBytes;
  private readonly superblock: XfsSuperblock;

  constructor(volume: VolumeBytes, superblock: XfsSuperblock) {
    this.volume = volume;
    this.superblock = superblock;
  }

  cached(number: number): XfsInode | undefined {
    return this.cache.get(number);
  }

  async inode(number: number): Promise<XfsInode> {
    const cached = this.cache.get(number);
    if (cached !== undefined) return cached;
    const bytes = new Uint8Array(this.superblock.inodeBytes);
    await this.volume.read(bytes, inodeOffset(this.superblock, number));
    const inode = parseInode(this.superblock, number, bytes);
    this.cache.set(number, inode);
    return inode;
  }
}

/** Where inode `number` lies in the volume (FILESYSTEM_CORRUPT for a number no inode can have). */
export function inodeOffset(superblock: XfsSuperblock, number: number): number {
  const { groupBlockBits, inodesPerBlockBits, groupBlocks, groupCount, blockBytes, inodeBytes, dataBlocks } = superblock;
  const perGroup = 2 ** (groupBlockBits + inodesPerBlockBits);
  const group = Math.floor(number / perGroup);
  const inGroup = number - group * perGroup;
  const block = Math.floor(inGroup / 2 ** inodesPerBlockBits);
  const slot = inGroup - block * 2 ** inodesPerBlockBits;
  const volumeBlock = group * groupBlocks + block;
  if (number === 0 || group >= groupCount || block >= groupBlocks || volumeBlock >= dataBlocks) throw corrupt(`inode ${number} lies outside the filesystem`);
  return volumeBlock * blockBytes + slot * inodeBytes;
}

function parseInode(superblock: XfsSuperblock, number: number, bytes: Uint8Array): XfsInode {
  if (uint16(bytes, 0) !== INODE_MAGIC) throw corrupt(`inode ${number} has no inode signature`);
  const version = bytes[4] as number;
  const coreBytes = version === 3 ? 176 : 100;
  if (superblock.version === 5 ? version !== 3 : version !== 1 && version !== 2) throw corrupt(`inode ${number} is of version ${version}`);
  if (version === 3 && !checksumHolds(bytes, 100)) throw corrupt(`inode ${number} fails its checksum`);
  if (version === 3 && uint64(bytes, 152, `inode ${number}'s own number`) !== number) throw corrupt(`inode ${number} says it is inode ${uint64(bytes, 152, 'an inode number')}`);
  const mode = uint16(bytes, 2);
  const format = bytes[5] as number;
  const size = uint64(bytes, 56, `inode ${number}'s size`);
  const forkOffset = (bytes[82] as number) * 8;
  const forkEnd = forkOffset === 0 ? bytes.length : coreBytes + forkOffset;
  if (forkEnd > bytes.length) throw corrupt(`inode ${number}'s attribute fork starts past its end`);
  const extentCount = superblock.largeExtentCounts && version === 3 && (uint32(bytes, 124) & NREXT64_FLAG) !== 0 ? uint64(bytes, 24, `inode ${number}'s extent count`) : uint32(bytes, 76);
  return {
    number,
    mode,
    format,
    size,
    mtimeMs: timeMs(superblock, version, bytes, 40),
    flags: uint16(bytes, 90),
    extentCount,
    dataFork: bytes.subarray(coreBytes, forkEnd),
  };
}

/** di_flags2's nrext64 bit: the data fork's extent count is the 64-bit field. */
const NREXT64_FLAG = 0x10;
/** di_flags2's bigtime bit: this inode's times are 64-bit nanoseconds from 1901-12-13 20:45:52 UTC. */
const BIGTIME_FLAG = 0x8;
const BIGTIME_EPOCH_OFFSET_S = 2 ** 31;

function timeMs(superblock: XfsSuperblock, version: number, bytes: Uint8Array, at: number): number {
  const flags2Low = version === 3 ? uint32(bytes, 124) : 0;
  if (superblock.bigTime && (flags2Low & BIGTIME_FLAG) !== 0) {
    // Exactly: as a double, nanoseconds this large round to 512 ns, and a time just short of a millisecond would pass it.
    const nanoseconds = (BigInt(uint32(bytes, at)) << 32n) | BigInt(uint32(bytes, at + 4));
    return Number(nanoseconds / 1_000_000n) - BIGTIME_EPOCH_OFFSET_S * 1000;
  }
  // Whole milliseconds, as the ext reader gives them.
  return int32(bytes, at) * 1000 + Math.floor(uint32(bytes, at + 4) / 1e6);
}
