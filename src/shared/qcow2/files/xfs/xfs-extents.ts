/**
 * Where an XFS file's (or folder's, or link's) content lies: its data fork's extent records, kept
 * in the inode (extents format) or in a B+tree whose root is in the inode (btree format). Every
 * record is checked (in file order, not overlapping, inside one allocation group of the volume)
 * and every tree block (its signature, its level, its owner on version 5) before it is believed.
 */
import { appendRange, type BlockRun, type FileBlockMap } from '../block-map.ts';
import type { ByteRange, VolumeBytes } from '../filesystem.ts';
import { checksumHolds, corrupt, uint16, uint32, uint64, unsupported } from './xfs-bytes.ts';
import { FORMAT_BTREE, FORMAT_EXTENTS, type XfsInode } from './xfs-inodes.ts';
import { volumeBlockOf, type XfsSuperblock } from './xfs-superblock.ts';

const RECORD_BYTES = 16;
const BTREE_MAGIC_V4 = 0x424d4150; // "BMAP"
const BTREE_MAGIC_V5 = 0x424d4133; // "BMA3"
const BTREE_HEADER_V4 = 24;
const BTREE_HEADER_V5 = 72;
/** The kernel's tallest data-fork tree is 9 levels at most; damage may claim more. */
const MAX_LEVELS = 9;
/** Tree blocks read for one file at most (a million is ~250 million extents: more is damage, or more than a listing can use). */
const MAX_TREE_BLOCKS = 1 << 20;
/** Extents of one file held at most (16 million: a 64 TiB file in 4 MiB pieces). */
const MAX_EXTENTS = 16 * 1024 * 1024;
/** File offsets past 2^53 bytes cannot be named by a JavaScript number: no file this reader reads goes there. */
const MAX_FILE_BYTES = 2 ** 53;

/** The block map (written extents; holes and unwritten extents read as zeros), with the unwritten extents beside it. */
export interface XfsBlockMap extends FileBlockMap {
  /** Allocated but never written (preallocated): they read as zeros, yet are the file's blocks. */
  unwritten: BlockRun[];
}

/** The data fork's block map of an inode in extents or btree format (the caller has checked the format). */
export async function xfsBlockMap(volume: VolumeBytes, superblock: XfsSuperblock, inode: XfsInode): Promise<XfsBlockMap> {
  const map: XfsBlockMap = { blockBytes: superblock.blockBytes, runs: [], unwritten: [], nodeBlocks: [] };
  const reader = new RecordReader(superblock, inode, map);
  if (inode.format === FORMAT_EXTENTS) {
    if (inode.extentCount * RECORD_BYTES > inode.dataFork.length) throw corrupt(`inode ${inode.number} claims ${inode.extentCount} extents, more than its inode holds`);
    for (let index = 0; index < inode.extentCount; index++) reader.add(inode.dataFork, index * RECORD_BYTES);
    return map;
  }
  if (inode.format !== FORMAT_BTREE) throw corrupt(`inode ${inode.number}'s content is in format ${inode.format}, not a block map`);
  const root = inode.dataFork;
  const level = uint16(root, 0);
  const count = uint16(root, 2);
  const maxRecords = Math.floor((root.length - 4) / 16);
  if (level < 1 || level > MAX_LEVELS || count < 1 || count > maxRecords) throw corrupt(`inode ${inode.number}'s extent tree root (level ${level}, ${count} entries)`);
  const pointerStart = 4 + maxRecords * 8;
  const walk = new TreeWalk(volume, superblock, inode, map, reader);
  for (let index = 0; index < count; index++) await walk.visit(uint64(root, pointerStart + index * 8, 'a tree pointer'), level - 1);
  return map;
}

/** The volume byte ranges of a block map's extents, written and unwritten, merged where they meet. */
export function mappedRanges(map: XfsBlockMap): ByteRange[] {
  const runs = map.unwritten.length === 0 ? map.runs : [...map.runs, ...map.unwritten].sort((a, b) => a.fileBlock - b.fileBlock);
  const ranges: ByteRange[] = [];
  for (const run of runs) appendRange(ranges, run.volumeBlock * map.blockBytes, run.count * map.blockBytes);
  return ranges;
}

/** Decodes 16-byte extent records into the map, in file order. */
class RecordReader {
  private nextFileBlock = 0;
  private readonly superblock: XfsSuperblock;
  private readonly inode: XfsInode;
  private readonly map: XfsBlockMap;

  constructor(superblock: XfsSuperblock, inode: XfsInode, map: XfsBlockMap) {
    this.superblock = superblock;
    this.inode = inode;
    this.map = map;
  }

  add(bytes: Uint8Array, at: number): void {
    // 1 bit unwritten, 54 bits file offset, 52 bits block, 21 bits count (big-endian, 128 bits).
    const high0 = uint32(bytes, at);
    const low0 = uint32(bytes, at + 4);
    const high1 = uint32(bytes, at + 8);
    const low1 = uint32(bytes, at + 12);
    const unwritten = high0 >>> 31 === 1;
    const fileBlock = (high0 & 0x7fffffff) * 2 ** 23 + (low0 >>> 9);
    const fsBlock = (low0 & 0x1ff) * 2 ** 43 + high1 * 2 ** 11 + (low1 >>> 21);
    const count = low1 & 0x1fffff;
    const where = `inode ${this.inode.number}'s extent at file block ${fileBlock}`;
    if (count === 0) throw corrupt(`${where} has no blocks`);
    if (fileBlock < this.nextFileBlock) throw corrupt(`${where} overlaps the one before it`);
    if ((fileBlock + count) * this.superblock.blockBytes > MAX_FILE_BYTES) throw corrupt(`${where} lies beyond 2^53 bytes`);
    const volumeBlock = volumeBlockOf(this.superblock, fsBlock, count, where);
    this.nextFileBlock = fileBlock + count;
    const runs = unwritten ? this.map.unwritten : this.map.runs;
    if (this.map.runs.length + this.map.unwritten.length >= MAX_EXTENTS) throw unsupported(`inode ${this.inode.number} has more than ${MAX_EXTENTS} extents`);
    const last = runs.at(-1);
    if (last !== undefined && last.fileBlock + last.count === fileBlock && last.volumeBlock + last.count === volumeBlock) last.count += count;
    else runs.push({ fileBlock, volumeBlock, count });
  }
}

/** The extent tree below the inode's root, depth first in key order. */
class TreeWalk {
  private readonly volume: VolumeBytes;
  private readonly superblock: XfsSuperblock;
  private readonly inode: XfsInode;
  private readonly map: XfsBlockMap;
  private readonly reader: RecordReader;
  private readonly header: number;
  private readonly magic: number;

  constructor(volume: VolumeBytes, superblock: XfsSuperblock, inode: XfsInode, map: XfsBlockMap, reader: RecordReader) {
    this.volume = volume;
    this.superblock = superblock;
    this.inode = inode;
    this.map = map;
    this.reader = reader;
    this.header = superblock.version === 5 ? BTREE_HEADER_V5 : BTREE_HEADER_V4;
    this.magic = superblock.version === 5 ? BTREE_MAGIC_V5 : BTREE_MAGIC_V4;
  }

  async visit(fsBlock: number, level: number): Promise<void> {
    if (this.map.nodeBlocks.length >= MAX_TREE_BLOCKS) throw corrupt(`inode ${this.inode.number}'s extent tree has more than ${MAX_TREE_BLOCKS} blocks`);
    const { blockBytes } = this.superblock;
    const volumeBlock = volumeBlockOf(this.superblock, fsBlock, 1, `inode ${this.inode.number}'s extent tree block`);
    this.map.nodeBlocks.push(volumeBlock);
    const block = new Uint8Array(blockBytes);
    await this.volume.read(block, volumeBlock * blockBytes);
    const where = `inode ${this.inode.number}'s extent tree block ${fsBlock}`;
    if (uint32(block, 0) !== this.magic) throw corrupt(`${where} has no tree block signature`);
    if (this.superblock.version === 5 && !checksumHolds(block, 64)) throw corrupt(`${where} fails its checksum`);
    if (uint16(block, 4) !== level) throw corrupt(`${where} is at level ${uint16(block, 4)}, not ${level}`);
    if (this.superblock.version === 5 && uint64(block, 56, 'a tree block owner') !== this.inode.number) throw corrupt(`${where} belongs to inode ${uint64(block, 56, 'an owner')}`);
    const count = uint16(block, 6);
    const maxRecords = Math.floor((blockBytes - this.header) / 16);
    if (count < 1 || count > maxRecords) throw corrupt(`${where} holds ${count} entries`);
    if (level === 0) {
      for (let index = 0; index < count; index++) this.reader.add(block, this.header + index * RECORD_BYTES);
      return;
    }
    const pointerStart = this.header + maxRecords * 8;
    for (let index = 0; index < count; index++) await this.visit(uint64(block, pointerStart + index * 8, 'a tree pointer'), level - 1);
  }
}
