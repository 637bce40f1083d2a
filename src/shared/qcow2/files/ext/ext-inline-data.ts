/**
 * ext4's inline data (the inline_data feature): a small file's, folder's or symlink's content kept
 * in its inode rather than in blocks — the first 60 bytes in i_block, the rest in the value of its
 * "system.data" extended attribute, which lies in the inode's own attribute area (after the fixed
 * 128 bytes and i_extra_isize). A folder kept inline starts with its parent's inode number (4 bytes),
 * then holds ordinary folder entries in what is left of i_block, and more in the attribute.
 * Read here from the inode's bytes: names as bytes (libext2fs, which read them before, took them as
 * UTF-8 text and lost any name that is not), for any block size.
 */
import { uint16, uint32 } from './ext-bytes.ts';
import { corrupt } from './ext-superblock.ts';

/** i_block's size: where inline data starts. */
const INLINE_HEAD_BYTES = 60;
const IN_INODE_ATTRIBUTES_MAGIC = 0xea020000;
/** The attribute name index of the "system." namespace; inline data is system.data. */
const SYSTEM_NAMESPACE = 7;
const ATTRIBUTE_ENTRY_BYTES = 16;

export interface InlineInode {
  size: number;
  /** The whole inode as stored (its inode-size bytes). */
  raw: Uint8Array;
}

/** The system.data attribute's value in the inode's own attribute area, or an empty one. */
function inlineTail(inode: InlineInode): Uint8Array {
  const { raw } = inode;
  if (raw.length <= 128) return new Uint8Array(0);
  const extraBytes = uint16(raw, 128);
  const areaStart = 128 + extraBytes;
  if (extraBytes % 4 !== 0 || areaStart + 4 > raw.length) return new Uint8Array(0);
  if (uint32(raw, areaStart) !== IN_INODE_ATTRIBUTES_MAGIC) return new Uint8Array(0);
  // Values lie at offsets from the first entry, which follows the magic number, and after the
  // entry list's end (its four zero bytes): a value over the entries would read them as data.
  const first = areaStart + 4;
  let value: { offset: number; bytes: number } | null = null;
  let at = first;
  for (; at + 4 <= raw.length && uint32(raw, at) !== 0; ) {
    if (at + ATTRIBUTE_ENTRY_BYTES > raw.length) throw corrupt('an extended attribute entry runs past the end of its inode');
    const nameBytes = raw[at] as number;
    const nameIndex = raw[at + 1] as number;
    const nameEnd = at + ATTRIBUTE_ENTRY_BYTES + nameBytes;
    if (nameEnd > raw.length) throw corrupt('an extended attribute name runs past the end of its inode');
    if (nameIndex === SYSTEM_NAMESPACE && nameBytes === 4 && raw[at + 16] === 0x64 && raw[at + 17] === 0x61 && raw[at + 18] === 0x74 && raw[at + 19] === 0x61) {
      if (uint32(raw, at + 4) !== 0) throw corrupt('inline data kept in an attribute inode');
      value = { offset: uint16(raw, at + 2), bytes: uint32(raw, at + 8) };
    }
    at = (nameEnd + 3) & ~3;
  }
  if (value === null || value.bytes === 0) return new Uint8Array(0);
  const entriesEnd = at + 4;
  const start = first + value.offset;
  if (start < entriesEnd || start + value.bytes > raw.length) throw corrupt('inline data lies outside its inode\'s attribute values');
  return raw.subarray(start, start + value.bytes);
}

/** An inline file's or symlink's content: its i_size bytes, from i_block then the attribute. */
export function inlineContent(inode: InlineInode): Uint8Array {
  const head = inode.raw.subarray(40, 40 + INLINE_HEAD_BYTES);
  if (inode.size <= head.length) return head.subarray(0, inode.size);
  const tail = inlineTail(inode);
  if (inode.size > head.length + tail.length) throw corrupt(`inline data of ${inode.size} bytes, where its inode holds ${head.length + tail.length}`);
  const content = new Uint8Array(inode.size);
  content.set(head);
  content.set(tail.subarray(0, inode.size - head.length), head.length);
  return content;
}

/**
 * The regions of an inline folder that hold folder entries: i_block after the parent's inode number,
 * and the attribute's value. Each is a run of entries whose record lengths fill it exactly.
 */
export function inlineFolderRegions(inode: InlineInode): Uint8Array[] {
  const head = inode.raw.subarray(40 + 4, 40 + INLINE_HEAD_BYTES);
  const tail = inlineTail(inode);
  return tail.length > 0 ? [head, tail] : [head];
}
