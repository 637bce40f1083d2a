/** The btrfs items the reader uses: roots of trees, inodes, folder entries and file extents, each checked against its item's size. */
import { guestFileName } from '../linux-names.ts';
import { corrupt, KEY_BYTES, readKey, uint16, uint32, uint64, unsupported, type BtrfsKey } from './btrfs-bytes.ts';
import type { TreeRoot } from './btrfs-tree.ts';

export const INODE_ITEM = 1;
export const DIR_INDEX = 96;
export const EXTENT_DATA = 108;
export const ROOT_ITEM = 132;
export const ROOT_REF = 156;

/** The top-level subvolume's tree, and every subvolume's root folder inode. */
export const FS_TREE = 5n;
export const ROOT_FOLDER_INODE = 256n;

const INODE_ITEM_BYTES = 160;

/** A ROOT_ITEM: where a tree's root block is and its level. */
export function parseRootItem(data: Uint8Array, tree: bigint): TreeRoot {
  if (data.length < 239) throw corrupt(`the root item of tree ${tree} holds ${data.length} bytes`);
  const level = data[238] as number;
  if (level > 7) throw corrupt(`tree ${tree} has ${level + 1} levels`);
  return { logical: uint64(data, 176, `tree ${tree}'s root address`), level };
}

export interface BtrfsInode {
  size: number;
  mode: number;
  /** Whole milliseconds (as the other readers give them); null where none is kept (a snapshot's placeholder). */
  mtimeMs: number | null;
}

export function parseInode(data: Uint8Array, inode: bigint): BtrfsInode {
  if (data.length < INODE_ITEM_BYTES) throw corrupt(`inode ${inode}'s item holds ${data.length} bytes`);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const seconds = Number(view.getBigInt64(136, true));
  return { size: uint64(data, 16, `inode ${inode}'s size`), mode: uint32(data, 52), mtimeMs: seconds * 1000 + Math.floor(uint32(data, 144) / 1e6) };
}

/** A folder entry: its name, and what it leads to (an inode of the same tree, or another subvolume's tree). */
export interface FolderEntry {
  name: string;
  location: BtrfsKey;
}

/** A DIR_INDEX item's entries (one, in practice). */
export function parseFolderEntries(data: Uint8Array, folder: bigint): FolderEntry[] {
  const entries: FolderEntry[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + 30 > data.length) throw corrupt(`folder ${folder}'s entry ends inside its header`);
    const dataBytes = uint16(data, at + KEY_BYTES + 8);
    const nameBytes = uint16(data, at + KEY_BYTES + 10);
    const end = at + 30 + nameBytes + dataBytes;
    if (nameBytes === 0 || nameBytes > 255 || end > data.length) throw corrupt(`folder ${folder} has an entry with a name of ${nameBytes} bytes`);
    const name = data.subarray(at + 30, at + 30 + nameBytes);
    if (name.includes(0x2f) || name.includes(0)) throw corrupt(`folder ${folder} holds a name with '/' or NUL in it`);
    entries.push({ name: guestFileName(name), location: readKey(data, at) });
    at = end;
  }
  return entries;
}

export const COMPRESSION_NONE = 0;

/** One EXTENT_DATA item: a piece of a file from `fileOffset`. */
export type FileExtent =
  | { kind: 'inline'; fileOffset: number; compression: number; length: number; bytes: Uint8Array }
  /** Stored on the device: `length` bytes of the file from `within` of the (decompressed) disk extent at `diskLogical`. */
  | { kind: 'regular'; fileOffset: number; compression: number; length: number; diskLogical: number; diskBytes: number; within: number; decompressedBytes: number }
  /** Preallocated, or a hole written as an item: reads as zeros. */
  | { kind: 'zeros'; fileOffset: number; length: number };

export function parseExtent(data: Uint8Array, fileOffset: bigint, inode: bigint): FileExtent {
  const where = `inode ${inode}'s extent at ${fileOffset}`;
  if (data.length < 21) throw corrupt(`${where} holds ${data.length} bytes`);
  if (fileOffset >= 2n ** 53n) throw corrupt(`${where} lies beyond 2^53 bytes`);
  const offset = Number(fileOffset);
  const decompressedBytes = uint64(data, 8, `${where}'s size`);
  const compression = data[16] as number;
  if ((data[17] as number) !== 0 || uint16(data, 18) !== 0) throw unsupported(`inode ${inode}'s content is encrypted or encoded inside the guest`);
  const type = data[20] as number;
  if (type === 0) return { kind: 'inline', fileOffset: offset, compression, length: compression === COMPRESSION_NONE ? data.length - 21 : decompressedBytes, bytes: data.subarray(21) };
  if (type !== 1 && type !== 2) throw corrupt(`${where} is of type ${type}`);
  if (data.length < 53) throw corrupt(`${where} holds ${data.length} bytes`);
  const diskLogical = uint64(data, 21, `${where}'s address`);
  const diskBytes = uint64(data, 29, `${where}'s stored size`);
  const within = uint64(data, 37, `${where}'s offset`);
  const length = uint64(data, 45, `${where}'s length`);
  if (offset + length > 2 ** 53) throw corrupt(`${where} lies beyond 2^53 bytes`);
  if (type === 2 || diskLogical === 0) return { kind: 'zeros', fileOffset: offset, length };
  const extentBytes = compression === COMPRESSION_NONE ? diskBytes : decompressedBytes;
  if (within + length > extentBytes) throw corrupt(`${where} takes ${length} bytes from ${within} of an extent of ${extentBytes}`);
  return { kind: 'regular', fileOffset: offset, compression, length, diskLogical, diskBytes, within, decompressedBytes };
}
