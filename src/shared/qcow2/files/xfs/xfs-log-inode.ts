/**
 * Replaying a logged inode into its place in an inode cluster buffer, as XFS's recovery does.
 *
 * An inode item's regions: its format (which inode, where its cluster buffer lies, which parts
 * were logged), the inode core in the log's own form (the on-disk layout, but every field in the
 * writing machine's byte order, times as one 64-bit word), then the data fork and the attribute
 * fork as logged. Extent lists and local data are logged as they lie on disk; a fork's extent-tree
 * root is logged as the in-memory tree block and is written back in the inode's own, smaller root
 * form. The core's sequence number becomes the replaying transaction's, and a version 3 inode's
 * CRC-32C is computed again.
 */
import { corrupt } from './xfs-bytes.ts';
import { storeChecksum } from './xfs-log-checksums.ts';
import type { Lsn } from './xfs-log-records.ts';
import { readUint16 } from './xfs-log-transactions.ts';
import type { XfsSuperblock } from './xfs-superblock.ts';

/** ilf_fields. */
const LOG_DEV = 0x10;
const LOG_DFORK = 0x02 | 0x04 | 0x08;
const LOG_DDATA = 0x02;
const LOG_DEXT = 0x04;
const LOG_DBROOT = 0x08;
const LOG_AFORK = 0x40 | 0x80 | 0x100;
const LOG_ADATA = 0x40;
const LOG_AEXT = 0x80;
const LOG_ABROOT = 0x100;
/** Swapped extent-tree owners (xfs_fsr): the tree blocks themselves change, which is not replayed here. */
const LOG_OWNERS = 0x200 | 0x400;

const INODE_MAGIC = 0x494e;
const FLAGS2_BIGTIME = 0x8;
const FLAGS2_NREXT64 = 0x10;
/** The long-form tree block header in memory: version 5 (with CRC, owner, UUID) and older. */
const TREE_HEADER_V5 = 72;
const TREE_HEADER_V4 = 24;

export interface InodeItemFormat {
  fields: number;
  regionCount: number;
  rdev: number;
  /** The inode cluster buffer: first 512-byte block, length in blocks, the inode's offset in it. */
  blkno: number;
  blocks: number;
  offset: number;
}

/** The item's format region, in either of its two layouts (56 bytes; 52 packed, from 32-bit kernels). */
export function inodeItemFormat(region: Uint8Array, littleEndian: boolean): InodeItemFormat {
  const view = new DataView(region.buffer, region.byteOffset, region.length);
  if (region.length !== 56 && region.length !== 52) throw corrupt(`a logged inode format of ${region.length} bytes`);
  const packed = region.length === 52;
  const blkno = view.getBigInt64(packed ? 36 : 40, littleEndian);
  if (blkno < 0n || blkno > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt('a logged inode lies outside any volume');
  return {
    fields: view.getUint32(4, littleEndian),
    regionCount: view.getUint16(2, littleEndian),
    rdev: view.getUint32(packed ? 20 : 24, littleEndian),
    blkno: Number(blkno),
    blocks: view.getInt32(packed ? 44 : 48, littleEndian),
    offset: view.getInt32(packed ? 48 : 52, littleEndian),
  };
}

/** Whether the item changes what only tools that rewrite tree blocks would (swapped owners): not replayed here. */
export function changesTreeOwners(format: InodeItemFormat): boolean {
  return (format.fields & LOG_OWNERS) !== 0;
}

/**
 * Replays the item's regions into `inode` (its bytes in the cluster buffer), unless the inode on
 * disk is already newer than the transaction: 'newer' then, and nothing changes.
 */
export function replayInode(inode: Uint8Array, format: InodeItemFormat, regions: readonly Uint8Array[], lsn: Lsn, littleEndian: boolean, superblock: XfsSuperblock): 'replayed' | 'newer' {
  const disk = new DataView(inode.buffer, inode.byteOffset, inode.length);
  const logged = regions[1];
  if (logged === undefined || logged.length < 96) throw corrupt('a logged inode without its core');
  if (disk.getUint16(0) !== INODE_MAGIC) throw corrupt(`a logged inode's place at block ${format.blkno} holds no inode`);
  if (readUint16(logged, 0, littleEndian) !== INODE_MAGIC) throw corrupt('a logged inode core without its signature');
  const log = new DataView(logged.buffer, logged.byteOffset, logged.length);
  const version = logged[4] as number;
  if (superblock.version === 5) {
    const onDisk = disk.getBigUint64(112);
    const current = (BigInt(lsn.cycle) << 32n) | BigInt(lsn.block);
    // Strictly newer: several checkpoints can share a start LSN, and this sets the inode's to it.
    if (onDisk !== 0n && onDisk !== 0xffffffffffffffffn && onDisk > current) return 'newer';
  } else {
    // Version 4: the flush counter says which is newer (it wraps at 65535).
    const loggedFlushes = log.getUint16(30, littleEndian);
    const diskFlushes = disk.getUint16(30);
    if (loggedFlushes < diskFlushes && !(diskFlushes === 0xffff && loggedFlushes < 0x7fff)) return 'newer';
  }
  const coreBytes = version === 3 ? 176 : 100;
  const loggedCoreBytes = version === 3 ? 176 : 96;
  if (logged.length < loggedCoreBytes || inode.length < coreBytes) throw corrupt(`a logged inode core of ${logged.length} bytes`);
  coreToDisk(log, disk, version, lsn, littleEndian, logged, inode);
  // Whatever the log holds past the core is in the on-disk form already.
  if (logged.length > loggedCoreBytes) {
    if (logged.length > inode.length) throw corrupt(`a logged inode of ${logged.length} bytes`);
    inode.set(logged.subarray(loggedCoreBytes), loggedCoreBytes);
  }
  if ((format.fields & LOG_DEV) !== 0) disk.setUint32(coreBytes, format.rdev);
  const forkOffset = (inode[82] as number) * 8;
  const dataForkBytes = forkOffset !== 0 ? forkOffset : inode.length - coreBytes;
  const attrStart = coreBytes + forkOffset;
  const attrForkBytes = forkOffset !== 0 ? inode.length - attrStart : 0;
  if (format.regionCount > 2) {
    const dataFork = format.fields & LOG_DFORK;
    if (dataFork !== 0) {
      const source = region(regions, 2);
      if (dataFork === LOG_DDATA || dataFork === LOG_DEXT) copyFork(inode, source, coreBytes, inode.length - coreBytes);
      else if (dataFork === LOG_DBROOT) treeRootToDisk(source, inode.subarray(coreBytes, coreBytes + dataForkBytes), superblock);
      else throw corrupt(`a logged inode with data fork flags 0x${dataFork.toString(16)}`);
    }
    const attrFork = format.fields & LOG_AFORK;
    if (attrFork !== 0) {
      const source = region(regions, dataFork !== 0 ? 3 : 2);
      if (attrForkBytes === 0) throw corrupt('a logged attribute fork for an inode without one');
      if (attrFork === LOG_ADATA || attrFork === LOG_AEXT) copyFork(inode, source, attrStart, attrForkBytes);
      else if (attrFork === LOG_ABROOT) treeRootToDisk(source, inode.subarray(attrStart, attrStart + attrForkBytes), superblock);
      else throw corrupt(`a logged inode with attribute fork flags 0x${attrFork.toString(16)}`);
    }
  }
  if (version === 3) storeChecksum(inode, 100);
  return 'replayed';
}

function region(regions: readonly Uint8Array[], index: number): Uint8Array {
  const found = regions[index];
  if (found === undefined) throw corrupt('a logged inode without a fork it names');
  return found;
}

function copyFork(inode: Uint8Array, source: Uint8Array, at: number, room: number): void {
  if (source.length > room) throw corrupt(`a logged fork of ${source.length} bytes where ${room} fit`);
  inode.set(source, at);
}

/** Fields of the core as (offset, width), written big-endian; the rest is handled apart. */
const SCALARS: readonly (readonly [number, number])[] = [
  [0, 2], [2, 2], [4, 1], [5, 1], [6, 2], [8, 4], [12, 4], [16, 4], [20, 2], [22, 2],
  [56, 8], [64, 8], [72, 4], [76, 4], [80, 2], [82, 1], [83, 1], [84, 4], [88, 2], [90, 2], [92, 4],
];
const SCALARS_V3: readonly (readonly [number, number])[] = [[104, 8], [120, 8], [128, 4], [152, 8]];

function coreToDisk(log: DataView, disk: DataView, version: number, lsn: Lsn, littleEndian: boolean, logged: Uint8Array, inode: Uint8Array): void {
  const copy = ([at, width]: readonly [number, number]): void => {
    if (width === 1) disk.setUint8(at, log.getUint8(at));
    else if (width === 2) disk.setUint16(at, log.getUint16(at, littleEndian));
    else if (width === 4) disk.setUint32(at, log.getUint32(at, littleEndian));
    else disk.setBigUint64(at, log.getBigUint64(at, littleEndian));
  };
  for (const field of SCALARS) copy(field);
  const flags2 = version === 3 ? log.getBigUint64(120, littleEndian) : 0n;
  const bigTime = (flags2 & BigInt(FLAGS2_BIGTIME)) !== 0n;
  for (const at of version === 3 ? [32, 40, 48, 144] : [32, 40, 48]) {
    if (bigTime) disk.setBigUint64(at, log.getBigUint64(at, littleEndian));
    else {
      // Seconds then nanoseconds, each 32 bits in the writer's order inside the 64-bit word.
      disk.setInt32(at, log.getInt32(at, littleEndian));
      disk.setInt32(at + 4, log.getInt32(at + 4, littleEndian));
    }
  }
  if (version === 3) {
    for (const field of SCALARS_V3) copy(field);
    // The data fork's 64-bit extent count where the inode has one; otherwise padding.
    if ((flags2 & BigInt(FLAGS2_NREXT64)) !== 0n) copy([24, 8]);
    else disk.setBigUint64(24, 0n);
    disk.setBigUint64(112, (BigInt(lsn.cycle) << 32n) | BigInt(lsn.block));
    inode.set(logged.subarray(132, 144), 132);
    inode.set(logged.subarray(160, 176), 160);
  } else {
    inode.fill(0, 24, 30);
    disk.setUint16(30, 0);
  }
}

/**
 * A fork's extent-tree root from the in-memory tree block the log holds (a full long-form header,
 * keys, then pointers after room for as many keys as the block could hold) into the inode's root
 * form (level and count, keys, then pointers after room for as many keys as the fork holds).
 */
function treeRootToDisk(source: Uint8Array, fork: Uint8Array, superblock: XfsSuperblock): void {
  const header = superblock.version === 5 ? TREE_HEADER_V5 : TREE_HEADER_V4;
  if (source.length < header + 16) throw corrupt(`a logged extent tree root of ${source.length} bytes`);
  const records = (source[6] as number) * 256 + (source[7] as number);
  const sourceRoom = Math.floor((source.length - header) / 16);
  const forkRoom = Math.floor((fork.length - 4) / 16);
  if (records === 0 || records > sourceRoom || records > forkRoom) throw corrupt(`a logged extent tree root of ${records} entries`);
  fork.set(source.subarray(4, 8), 0);
  fork.set(source.subarray(header, header + records * 8), 4);
  const pointers = header + sourceRoom * 8;
  fork.set(source.subarray(pointers, pointers + records * 8), 4 + forkRoom * 8);
}
