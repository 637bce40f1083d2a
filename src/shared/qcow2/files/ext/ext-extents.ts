/**
 * Where a file's content lies in its ext volume, read from its inode: the extent tree (ext4) or the
 * block map (ext2/3: direct, indirect, double and triple indirect blocks), as runs of file blocks
 * on volume blocks. Holes and uninitialised extents read as zeros, so they are not runs. Every
 * block number is checked against the filesystem, runs must come in file order without overlap,
 * and the walk is bounded by the file's size; a file whose data is inline in its inode gives null.
 */
import type { ByteRange, VolumeBytes } from '../filesystem.ts';
import { uint16, uint32 } from './ext-bytes.ts';
import { crc32c } from '../crc32c.ts';
import { inodeChecksumSeed } from './ext-checksums.ts';
import { corrupt, type ExtSuperblock } from './ext-superblock.ts';
import { appendRange, type BlockRun, type FileBlockMap } from '../block-map.ts';

const EXTENTS_FLAG = 0x80000;
const INLINE_DATA_FLAG = 0x10000000;
const EXTENT_MAGIC = 0xf30a;
const MAX_EXTENT_DEPTH = 5;
const UNINITIALISED_LENGTH = 32768;

/** What the block walk needs of an inode (ext-inodes.ts ExtInode has it). */
export interface InodeContent {
  number: number;
  generation: number;
  flags: number;
  size: number;
  /** i_block: the extent tree's root or the block map's pointers (60 bytes). */
  iBlock: Uint8Array;
}

export async function extFileBlockMap(volume: VolumeBytes, superblock: ExtSuperblock, inode: InodeContent): Promise<FileBlockMap | null> {
  if ((inode.flags & INLINE_DATA_FLAG) !== 0) return null;
  const walk = new BlockWalk(volume, superblock, Math.ceil(inode.size / superblock.blockBytes), inodeChecksumSeed(superblock, inode));
  if ((inode.flags & EXTENTS_FLAG) !== 0) {
    const below = walk.extentNode(inode.iBlock, MAX_EXTENT_DEPTH);
    if (below !== undefined) await below;
  }
  else await walk.blockMap(inode.iBlock);
  return { blockBytes: superblock.blockBytes, runs: walk.runs, nodeBlocks: walk.nodeBlocks };
}

/**
 * For files-diff: whether a volume block holding the file's content changed (by `changed`, volume
 * offsets) when all its extents sit in the inode itself (a tree of depth 0, as most files have),
 * checked as the block walk checks them (its leaf loop, without building runs); true for inline
 * data (only a comparison tells), undefined when blocks must be read (then extFileBlockMap).
 */
export function inodeExtentsChanged(superblock: ExtSuperblock, inode: InodeContent, changed: (offset: number, length: number) => boolean): boolean | undefined {
  if ((inode.flags & INLINE_DATA_FLAG) !== 0) return true;
  const node = inode.iBlock;
  if ((inode.flags & EXTENTS_FLAG) === 0 || uint16(node, 6) !== 0) return undefined;
  if (uint16(node, 0) !== EXTENT_MAGIC) throw corrupt('an extent tree node has no magic');
  const entries = uint16(node, 2);
  if (12 + entries * 12 > node.length) throw corrupt(`an extent tree node claims ${entries} entries`);
  const { blockBytes } = superblock;
  const fileBlocks = Math.ceil(inode.size / blockBytes);
  let nextFileBlock = 0;
  for (let entry = 0; entry < entries && nextFileBlock < fileBlocks; entry++) {
    const at = 12 + entry * 12;
    const fileBlock = uint32(node, at);
    let length = uint16(node, at + 4);
    const uninitialised = length > UNINITIALISED_LENGTH;
    if (uninitialised) length -= UNINITIALISED_LENGTH;
    const volumeBlock = uint16(node, at + 6) * 2 ** 32 + uint32(node, at + 8);
    if (fileBlock < nextFileBlock) throw corrupt('its extents overlap or are out of order');
    nextFileBlock = fileBlock + length;
    const count = Math.min(length, fileBlocks - fileBlock);
    if (uninitialised || count <= 0) continue;
    checkBlock(superblock, volumeBlock + count - 1);
    if (changed(volumeBlock * blockBytes, count * blockBytes)) return true;
  }
  return false;
}

/** The volume byte ranges holding the file's content, merged where they touch. */
export async function extExtents(volume: VolumeBytes, superblock: ExtSuperblock, inode: InodeContent): Promise<ByteRange[] | null> {
  const map = await extFileBlockMap(volume, superblock, inode);
  if (map === null) return null;
  const ranges: ByteRange[] = [];
  for (const run of map.runs) appendRange(ranges, run.volumeBlock * map.blockBytes, run.count * map.blockBytes);
  return ranges;
}

export function checkBlock(superblock: ExtSuperblock, block: number): void {
  if (block >= superblock.blocksCount) throw corrupt(`block ${block} lies past the last block (${superblock.blocksCount - 1})`);
}

/**
 * metadata_csum: an extent tree block read from the volume ends its entries (as many as its header
 * allows, eh_max) with the CRC-32C of all before, seeded with the inode's seed; the kernel refuses
 * one that fails ("extent tree block checksum").
 */
function checkExtentBlock(node: Uint8Array, seed: number, block: number): void {
  if (uint16(node, 0) !== EXTENT_MAGIC) throw corrupt('an extent tree node has no magic');
  const tail = 12 + uint16(node, 4) * 12;
  if (tail + 4 > node.length || uint32(node, tail) !== crc32c(node.subarray(0, tail), seed)) throw corrupt(`the extent tree block ${block} fails its checksum (Linux refuses to read the file)`);
}

class BlockWalk {
  readonly runs: BlockRun[] = [];
  readonly nodeBlocks: number[] = [];
  private readonly volume: VolumeBytes;
  private readonly superblock: ExtSuperblock;
  private readonly fileBlocks: number;
  /** The next file block a run may start at (runs come in file order). */
  private nextFileBlock = 0;
  /** Tree and indirect blocks this walk may still read: zero-length extents cannot make it endless. */
  private nodesLeft: number;
  /** metadata_csum: the inode's seed, which every extent tree block's checksum starts from. */
  private readonly checksumSeed: number | null;

  constructor(volume: VolumeBytes, superblock: ExtSuperblock, fileBlocks: number, checksumSeed: number | null) {
    this.volume = volume;
    this.superblock = superblock;
    this.fileBlocks = fileBlocks;
    this.nodesLeft = 1024 + fileBlocks;
    this.checksumSeed = checksumSeed;
  }

  private get done(): boolean {
    return this.nextFileBlock >= this.fileBlocks;
  }

  /** A node of the extent tree and all below it; a leaf (most files' only node, in the inode) is walked without waiting. */
  extentNode(node: Uint8Array, depthLeft: number): Promise<void> | undefined {
    const view = new DataView(node.buffer, node.byteOffset, node.byteLength);
    if (view.getUint16(0, true) !== EXTENT_MAGIC) throw corrupt('an extent tree node has no magic');
    const entries = view.getUint16(2, true);
    const depth = view.getUint16(6, true);
    if (12 + entries * 12 > node.length) throw corrupt(`an extent tree node claims ${entries} entries`);
    if (depth >= depthLeft) throw corrupt(`an extent tree deeper than ${MAX_EXTENT_DEPTH}`);
    if (depth > 0) return this.extentChildren(view, entries, depth);
    for (let entry = 0; entry < entries && !this.done; entry++) {
      const at = 12 + entry * 12;
      const fileBlock = view.getUint32(at, true);
      let length = view.getUint16(at + 4, true);
      const uninitialised = length > UNINITIALISED_LENGTH;
      if (uninitialised) length -= UNINITIALISED_LENGTH;
      const volumeBlock = view.getUint16(at + 6, true) * 2 ** 32 + view.getUint32(at + 8, true);
      if (fileBlock < this.nextFileBlock) throw corrupt('its extents overlap or are out of order');
      this.nextFileBlock = fileBlock;
      if (uninitialised) this.nextFileBlock = fileBlock + length;
      else this.add(volumeBlock, length);
    }
    return undefined;
  }

  private async extentChildren(view: DataView, entries: number, depth: number): Promise<void> {
    for (let entry = 0; entry < entries && !this.done; entry++) {
      const at = 12 + entry * 12;
      const child = view.getUint32(at + 4, true) + view.getUint16(at + 8, true) * 2 ** 32;
      const node = await this.block(child);
      if (this.checksumSeed !== null) checkExtentBlock(node, this.checksumSeed, child);
      await this.extentNode(node, depth);
    }
  }

  async blockMap(iBlock: Uint8Array): Promise<void> {
    const view = new DataView(iBlock.buffer, iBlock.byteOffset, iBlock.byteLength);
    for (let index = 0; index < 12 && !this.done; index++) this.addMapped(view.getUint32(index * 4, true));
    for (let level = 1; level <= 3 && !this.done; level++) await this.indirect(view.getUint32((11 + level) * 4, true), level);
  }

  private async indirect(pointer: number, level: number): Promise<void> {
    const perBlock = this.superblock.blockBytes / 4;
    if (pointer === 0) {
      // A hole as large as everything this pointer would have named.
      this.nextFileBlock += perBlock ** level;
      return;
    }
    const table = await this.block(pointer);
    const view = new DataView(table.buffer);
    for (let index = 0; index < perBlock && !this.done; index++) {
      const entry = view.getUint32(index * 4, true);
      if (level === 1) this.addMapped(entry);
      else await this.indirect(entry, level - 1);
    }
  }

  private addMapped(block: number): void {
    if (block === 0) this.nextFileBlock += 1;
    else this.add(block, 1);
  }

  /** `count` blocks from volume block `volumeBlock` at the next file block, clipped to the file's size. */
  private add(volumeBlock: number, count: number): void {
    const fileBlock = this.nextFileBlock;
    const length = Math.min(count, this.fileBlocks - fileBlock);
    this.nextFileBlock += count;
    if (length <= 0) return;
    checkBlock(this.superblock, volumeBlock + length - 1);
    const last = this.runs.at(-1);
    if (last && last.fileBlock + last.count === fileBlock && last.volumeBlock + last.count === volumeBlock) last.count += length;
    else this.runs.push({ fileBlock, volumeBlock, count: length });
  }

  private async block(block: number): Promise<Uint8Array> {
    checkBlock(this.superblock, block);
    if (--this.nodesLeft < 0) throw corrupt('its extent tree or block map names more blocks than the file holds');
    this.nodeBlocks.push(block);
    const bytes = new Uint8Array(this.superblock.blockBytes);
    await this.volume.read(bytes, block * this.superblock.blockBytes);
    return bytes;
  }
}

