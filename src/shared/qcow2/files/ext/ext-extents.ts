/**
 * Where a file's content lies in its ext volume, read from its inode: the extent tree (ext4) or the
 * block map (ext2/3: direct, indirect, double and triple indirect blocks). Uninitialised extents
 * read as zeros, so their bytes are not content and are left out. Every block number is checked
 * against the filesystem and the walk is bounded by the file's size; inline data gives null.
 */
import type { ByteRange, VolumeBytes } from '../filesystem.ts';
import { corrupt, type ExtSuperblock } from './ext-superblock.ts';

const EXTENTS_FLAG = 0x80000;
const INLINE_DATA_FLAG = 0x10000000;
const EXTENT_MAGIC = 0xf30a;
const MAX_EXTENT_DEPTH = 5;
const UNINITIALISED_LENGTH = 32768;

export async function extExtents(volume: VolumeBytes, superblock: ExtSuperblock, inodeNumber: number): Promise<ByteRange[] | null> {
  const inode = await readInode(volume, superblock, inodeNumber);
  const view = new DataView(inode.buffer, inode.byteOffset, inode.byteLength);
  const flags = view.getUint32(32, true);
  if ((flags & INLINE_DATA_FLAG) !== 0) return null;
  const size = view.getUint32(4, true) + view.getUint32(108, true) * 2 ** 32;
  const walk = new BlockWalk(volume, superblock, Math.ceil(size / superblock.blockBytes));
  const iBlock = inode.subarray(40, 100);
  if ((flags & EXTENTS_FLAG) !== 0) await walk.extentNode(iBlock, MAX_EXTENT_DEPTH);
  else await walk.blockMap(iBlock);
  return walk.ranges();
}

async function readInode(volume: VolumeBytes, superblock: ExtSuperblock, inodeNumber: number): Promise<Uint8Array> {
  if (!Number.isSafeInteger(inodeNumber) || inodeNumber < 1 || inodeNumber > superblock.inodesCount) throw corrupt(`inode ${inodeNumber} is out of range`);
  const group = Math.floor((inodeNumber - 1) / superblock.inodesPerGroup);
  const index = (inodeNumber - 1) % superblock.inodesPerGroup;
  const descriptorBlock = superblock.firstDataBlock + 1;
  const descriptor = new Uint8Array(superblock.groupDescriptorBytes);
  await volume.read(descriptor, descriptorBlock * superblock.blockBytes + group * superblock.groupDescriptorBytes);
  const view = new DataView(descriptor.buffer);
  const tableBlock = view.getUint32(8, true) + (superblock.is64Bit && superblock.groupDescriptorBytes >= 64 ? view.getUint32(0x28, true) * 2 ** 32 : 0);
  checkBlock(superblock, tableBlock);
  const inode = new Uint8Array(superblock.inodeBytes);
  await volume.read(inode, tableBlock * superblock.blockBytes + index * superblock.inodeBytes);
  return inode;
}

function checkBlock(superblock: ExtSuperblock, block: number): void {
  if (block >= superblock.blocksCount) throw corrupt(`block ${block} lies past the last block (${superblock.blocksCount - 1})`);
}

class BlockWalk {
  private readonly found: ByteRange[] = [];
  private readonly volume: VolumeBytes;
  private readonly superblock: ExtSuperblock;
  private blocksLeft: number;
  /** Tree and indirect blocks this walk may still read: zero-length extents cannot make it endless. */
  private nodesLeft: number;

  constructor(volume: VolumeBytes, superblock: ExtSuperblock, fileBlocks: number) {
    this.volume = volume;
    this.superblock = superblock;
    this.blocksLeft = fileBlocks;
    this.nodesLeft = 1024 + fileBlocks;
  }

  ranges(): ByteRange[] {
    return this.found;
  }

  async extentNode(node: Uint8Array, depthLeft: number): Promise<void> {
    const view = new DataView(node.buffer, node.byteOffset, node.byteLength);
    if (view.getUint16(0, true) !== EXTENT_MAGIC) throw corrupt('an extent tree node has no magic');
    const entries = view.getUint16(2, true);
    const depth = view.getUint16(6, true);
    if (12 + entries * 12 > node.length) throw corrupt(`an extent tree node claims ${entries} entries`);
    if (depth >= depthLeft) throw corrupt(`an extent tree deeper than ${MAX_EXTENT_DEPTH}`);
    for (let entry = 0; entry < entries && this.blocksLeft > 0; entry++) {
      const at = 12 + entry * 12;
      if (depth === 0) {
        let length = view.getUint16(at + 4, true);
        const uninitialised = length > UNINITIALISED_LENGTH;
        if (uninitialised) length -= UNINITIALISED_LENGTH;
        const start = view.getUint16(at + 6, true) * 2 ** 32 + view.getUint32(at + 8, true);
        if (!uninitialised) this.add(start, length);
        else this.blocksLeft -= length;
      } else {
        const child = view.getUint32(at + 4, true) + view.getUint16(at + 8, true) * 2 ** 32;
        await this.extentNode(await this.block(child), depth);
      }
    }
  }

  async blockMap(iBlock: Uint8Array): Promise<void> {
    const view = new DataView(iBlock.buffer, iBlock.byteOffset, iBlock.byteLength);
    for (let index = 0; index < 12 && this.blocksLeft > 0; index++) this.addMapped(view.getUint32(index * 4, true));
    for (let level = 1; level <= 3 && this.blocksLeft > 0; level++) {
      const pointer = view.getUint32((11 + level) * 4, true);
      await this.indirect(pointer, level);
    }
  }

  private async indirect(pointer: number, level: number): Promise<void> {
    const perBlock = this.superblock.blockBytes / 4;
    if (pointer === 0) {
      // A hole: skip the blocks this pointer would have named.
      this.blocksLeft -= perBlock ** level;
      return;
    }
    const table = await this.block(pointer);
    const view = new DataView(table.buffer);
    for (let index = 0; index < perBlock && this.blocksLeft > 0; index++) {
      const entry = view.getUint32(index * 4, true);
      if (level === 1) this.addMapped(entry);
      else await this.indirect(entry, level - 1);
    }
  }

  private addMapped(block: number): void {
    if (block === 0) this.blocksLeft -= 1;
    else this.add(block, 1);
  }

  private add(block: number, count: number): void {
    const length = Math.min(count, this.blocksLeft);
    if (length <= 0) return;
    checkBlock(this.superblock, block + length - 1);
    this.blocksLeft -= length;
    const offset = block * this.superblock.blockBytes;
    const bytes = length * this.superblock.blockBytes;
    const last = this.found.at(-1);
    if (last && last.offset + last.length === offset) last.length += bytes;
    else this.found.push({ offset, length: bytes });
  }

  private async block(block: number): Promise<Uint8Array> {
    checkBlock(this.superblock, block);
    if (--this.nodesLeft < 0) throw corrupt('its extent tree or block map names more blocks than the file holds');
    const bytes = new Uint8Array(this.superblock.blockBytes);
    await this.volume.read(bytes, block * this.superblock.blockBytes);
    return bytes;
  }
}
