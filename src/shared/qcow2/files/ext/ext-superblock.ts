/**
 * The ext2/3/4 superblock fields Cowbell reads itself (the rest is libext2fs's): enough to probe,
 * name the volume, refuse a geometry libext2fs should never be handed, and find an inode.
 */
import { Qcow2Error } from '../../errors.ts';
import type { VolumeBytes } from '../filesystem.ts';

export const SUPERBLOCK_OFFSET = 1024;
const SUPERBLOCK_BYTES = 1024;
const EXT_MAGIC = 0xef53;
const INCOMPAT_64BIT = 0x80;

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
  const inodeBytes = revision === 0 ? 128 : view.getUint16(88, true);
  const groupDescriptorBytes = is64Bit ? view.getUint16(254, true) : 32;
  if (blocksCount === 0 || blocksCount * blockBytes > volume.length) throw corrupt(`${blocksCount} blocks of ${blockBytes} bytes do not fit the ${volume.length}-byte volume`);
  if (inodesPerGroup === 0 || blocksPerGroup === 0 || inodesCount === 0) throw corrupt('zero inodes or blocks per group');
  if (inodesPerGroup > blockBytes * 8 || blocksPerGroup > blockBytes * 8) throw corrupt('more inodes or blocks per group than a bitmap block can hold');
  if (inodeBytes < 128 || inodeBytes > blockBytes || (inodeBytes & (inodeBytes - 1)) !== 0) throw corrupt(`an inode size of ${inodeBytes} bytes`);
  if (groupDescriptorBytes < 32 || groupDescriptorBytes > 1024 || (groupDescriptorBytes & (groupDescriptorBytes - 1)) !== 0) throw corrupt(`a group descriptor size of ${groupDescriptorBytes} bytes`);
  if (firstDataBlock >= blocksCount) throw corrupt(`its first data block (${firstDataBlock}) lies past its last`);
  return { blockBytes, blocksCount, inodesCount, inodesPerGroup, firstDataBlock, inodeBytes, groupDescriptorBytes, is64Bit, label: cString(bytes.subarray(120, 136)) };
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end === -1 ? bytes : bytes.subarray(0, end));
}

export function corrupt(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `The ext filesystem is damaged: ${detail}`);
}
