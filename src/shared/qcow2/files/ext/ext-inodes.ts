/**
 * Inodes and directories read straight from an ext volume: what a listing needs (mode, size,
 * mtime, a symlink's target) and a folder's entries (name → inode number) from its blocks, linear
 * or hashed (an htree's index blocks hold no live entries, so a linear read sees every name once).
 * A listing costs the folder's blocks and one inode per entry (libext2fs, used before, could only
 * stat by path — a linear search of the folder per name, n² entry reads for n files).
 * Folders and symlinks stored inline in the inode are read from it (ext-inline-data.ts).
 */
import type { VolumeBytes } from '../filesystem.ts';
import { crc32c } from '../crc32c.ts';
import { int32, uint16, uint32 } from './ext-bytes.ts';
import { readMapped } from '../block-map.ts';
import { decodeGuestName, guestFileName } from '../linux-names.ts';
import { inodeChecksumSeed } from './ext-checksums.ts';
import { extFileBlockMap } from './ext-extents.ts';
import { inlineContent, inlineFolderRegions } from './ext-inline-data.ts';
import { corrupt, type ExtSuperblock } from './ext-superblock.ts';

export const ROOT_INODE = 2;
const INLINE_DATA_FLAG = 0x10000000;
/** EXT4_ENCRYPT_FL: the guest encrypted this file's content, or this folder's names (fscrypt). */
export const ENCRYPTED_FLAG = 0x800;
/** A folder larger than this (about a million names) is refused: a hostile size would otherwise allocate without bound. */
const MAX_FOLDER_BYTES = 32 * 1024 * 1024;

export interface ExtInode {
  number: number;
  mode: number;
  /** i_links_count: 0 for a deleted (or never used) inode, which no folder entry may name. */
  linksCount: number;
  /** i_generation: with the inode's number, the seed of its blocks' metadata checksums. */
  generation: number;
  size: number;
  mtimeMs: number;
  flags: number;
  /** 512-byte sectors the inode's data and extended attributes occupy. */
  sectors: number;
  fileAclBlock: number;
  iBlock: Uint8Array;
  /** The whole inode as stored, for inline data (its attribute lies past the fixed fields); empty for any other inode. */
  raw: Uint8Array;
}

/**
 * An inode from the `inodeBytes` bytes at `at` of `bytes` (a piece of the inode table). Read
 * without a DataView: files-diff parses tens of thousands, and each view was garbage.
 */
export function parseInode(bytes: Uint8Array, inodeNumber: number, at = 0, inodeBytes = bytes.length - at): ExtInode {
  let mtimeSeconds = int32(bytes, at + 0x10);
  let mtimeNanoseconds = 0;
  // The extra field (where the inode is large enough to hold it): its two low bits extend the
  // seconds past 2038, the other thirty are nanoseconds (ext4; ext2/3's 128-byte inodes have none).
  if (inodeBytes >= 0x8c && 128 + uint16(bytes, at + 0x80) >= 0x8c) {
    const extra = uint32(bytes, at + 0x88);
    mtimeSeconds += (extra & 3) * 2 ** 32;
    const nanoseconds = extra >>> 2;
    if (nanoseconds < 1e9) mtimeNanoseconds = nanoseconds;
  }
  return {
    number: inodeNumber,
    mode: uint16(bytes, at),
    linksCount: uint16(bytes, at + 26),
    generation: uint32(bytes, at + 0x64),
    size: uint32(bytes, at + 4) + uint32(bytes, at + 108) * 2 ** 32,
    mtimeMs: mtimeSeconds * 1000 + Math.floor(mtimeNanoseconds / 1e6),
    flags: uint32(bytes, at + 32),
    sectors: uint32(bytes, at + 0x1c) + uint16(bytes, at + 0x74) * 2 ** 32,
    fileAclBlock: uint32(bytes, at + 0x68) + uint16(bytes, at + 0x76) * 2 ** 32,
    iBlock: bytes.subarray(at + 40, at + 100),
    // Only inline data is read past the fixed fields: no view made for the tens of thousands of others.
    raw: (uint32(bytes, at + 32) & INLINE_DATA_FLAG) !== 0 ? bytes.subarray(at, at + inodeBytes) : NO_BYTES,
  };
}

const NO_BYTES = new Uint8Array(0);

const CHECKSUM_LO_AT = 0x7c;
const CHECKSUM_HI_AT = 0x82;
const ZERO_WORD = new Uint8Array(2);

/**
 * Refuses an inode that fails its metadata_csum checksum, as the kernel does (EFSBADCRC: "iget:
 * checksum invalid"): CRC-32C of the whole on-disk inode, its checksum fields taken as zero,
 * seeded with the filesystem's seed, then the inode's number and generation. The high half is
 * there only where the inode's extra fields reach it.
 */
export function checkInodeChecksum(bytes: Uint8Array, inodeNumber: number, at: number, inodeBytes: number, seed: number | null): void {
  const inodeSeed = inodeChecksumSeed({ checksumSeed: seed }, { number: inodeNumber, generation: uint32(bytes, at + 0x64) });
  if (inodeSeed === null) return;
  let crc = inodeSeed;
  const hasHigh = inodeBytes > 128 && 128 + uint16(bytes, at + 0x80) >= CHECKSUM_HI_AT + 2;
  crc = crc32c(bytes, crc, at, at + CHECKSUM_LO_AT);
  crc = crc32c(ZERO_WORD, crc);
  if (hasHigh) {
    crc = crc32c(bytes, crc, at + CHECKSUM_LO_AT + 2, at + CHECKSUM_HI_AT);
    crc = crc32c(ZERO_WORD, crc);
    crc = crc32c(bytes, crc, at + CHECKSUM_HI_AT + 2, at + inodeBytes);
  } else crc = crc32c(bytes, crc, at + CHECKSUM_LO_AT + 2, at + inodeBytes);
  const stored = uint16(bytes, at + CHECKSUM_LO_AT) + (hasHigh ? uint16(bytes, at + CHECKSUM_HI_AT) * 0x10000 : 0);
  if (stored !== (hasHigh ? crc >>> 0 : crc & 0xffff)) throw corrupt(`inode ${inodeNumber} fails its checksum (Linux refuses to read it)`);
}

export const S_IFMT = 0xf000;
export const S_IFDIR = 0x4000;
export const S_IFREG = 0x8000;
export const S_IFLNK = 0xa000;

/** A folder's entries other than "." and "..", from its blocks or, kept inline, from its inode. */
export async function readFolder(volume: VolumeBytes, superblock: ExtSuperblock, folder: ExtInode): Promise<Map<string, number>> {
  const entries = new Map<string, number>();
  if ((folder.flags & INLINE_DATA_FLAG) !== 0) {
    inlineFolderRegions(folder).forEach((region, index) => {
      // A Buffer for its latin1 slices (see below).
      const bytes = Buffer.from(region.buffer, region.byteOffset, region.byteLength);
      addFolderEntries(bytes, 0, bytes.length, superblock, entries, index === 0 ? 'its inode' : 'its inline data attribute');
    });
    return entries;
  }
  if (folder.size > MAX_FOLDER_BYTES) throw corrupt(`a folder of ${folder.size} bytes`);
  const map = await extFileBlockMap(volume, superblock, folder);
  if (map === null) return entries;
  // A Buffer for its latin1 slices: an ASCII name becomes a string in one native call.
  const bytes = Buffer.alloc(folder.size);
  await readMapped(volume, map, bytes, 0);
  const blockBytes = superblock.blockBytes;
  const seed = inodeChecksumSeed(superblock, folder);
  for (let block = 0; block * blockBytes < bytes.length; block++) {
    const start = block * blockBytes;
    if (seed !== null && start + blockBytes <= bytes.length) checkFolderBlock(bytes.subarray(start, start + blockBytes), seed, block, (folder.flags & INDEX_FLAG) !== 0);
    addFolderEntries(bytes, start, Math.min(bytes.length, start + blockBytes), superblock, entries, `its block ${block}`);
  }
  return entries;
}

const INDEX_FLAG = 0x1000;
const TAIL_BYTES = 12;
const TAIL_FILE_TYPE = 0xde;

/**
 * metadata_csum: a folder's leaf block ends in a tail (a 12-byte entry of no inode, file type
 * 0xDE) holding the CRC-32C of the rest, seeded with the folder inode's seed; the kernel does not
 * read a block without it or failing it ("directory fails checksum"). An htree's index blocks (its first
 * block, and blocks that are one empty entry as long as the block) keep their checksum elsewhere
 * and hold no names: they are not checked here.
 */
function checkFolderBlock(block: Uint8Array, seed: number, index: number, hashed: boolean): void {
  const tail = block.length - TAIL_BYTES;
  // An entry as long as the block: 65536 is stored as 65535 or 0 (ext4_rec_len_to_disk).
  const wholeBlock = block.length === 65536 ? uint16(block, 4) === 65535 || uint16(block, 4) === 0 : uint16(block, 4) === block.length;
  if (hashed && (index === 0 || (uint32(block, 0) === 0 && wholeBlock))) return;
  const hasTail = uint32(block, tail) === 0 && uint16(block, tail + 4) === TAIL_BYTES && block[tail + 6] === 0 && block[tail + 7] === TAIL_FILE_TYPE;
  if (hasTail && uint32(block, tail + 8) === crc32c(block.subarray(0, tail), seed)) return;
  // Linux fails to list an htree folder whose leaf block fails; a linear one it lists without that block's names, which
  // would show them as gone (files-diff as removed): here the folder is refused whole either way.
  throw corrupt(`the folder's block ${index} fails its checksum (${hashed ? 'Linux refuses to list the folder' : 'Linux lists the folder without the names that block holds'})`);
}

/** The folder entries in bytes [start, end) of `bytes` (a block, or a region of an inline folder), into `entries`. */
function addFolderEntries(bytes: Buffer, start: number, end: number, superblock: ExtSuperblock, entries: Map<string, number>, where: string): void {
  let at = start;
  while (at + 8 <= end) {
    const inodeNumber = uint32(bytes, at);
    const recordBytes = uint16(bytes, at + 4);
    const nameBytes = bytes[at + 6] as number;
    if (recordBytes < 8 || recordBytes % 4 !== 0 || at + recordBytes > end) throw corrupt(`a folder entry of ${recordBytes} bytes at ${at - start} in ${where}`);
    if (inodeNumber !== 0 && nameBytes > 0) {
      if (8 + nameBytes > recordBytes) throw corrupt(`a folder entry's name (${nameBytes} bytes) is longer than its record`);
      if (inodeNumber > superblock.inodesCount) throw corrupt(`a folder entry names inode ${inodeNumber}`);
      const name = guestFileName(bytes.subarray(at + 8, at + 8 + nameBytes));
      if (name !== '.' && name !== '..') entries.set(name, inodeNumber);
    }
    at += recordBytes;
  }
}

/** A symlink's target: in the inode itself when short (a "fast" symlink), else in its blocks or its inline data. */
export async function readSymlink(volume: VolumeBytes, superblock: ExtSuperblock, link: ExtInode): Promise<string> {
  if ((link.flags & INLINE_DATA_FLAG) !== 0) {
    if (link.size > 65536) throw corrupt(`a symlink target of ${link.size} bytes`);
    return decodeGuestName(inlineContent(link));
  }
  const attributeSectors = link.fileAclBlock !== 0 ? superblock.blockBytes / 512 : 0;
  if (link.sectors - attributeSectors === 0) {
    if (link.size > link.iBlock.length) throw corrupt(`a symlink of ${link.size} bytes kept in its inode`);
    return decodeGuestName(link.iBlock.subarray(0, link.size));
  }
  if (link.size > 65536) throw corrupt(`a symlink target of ${link.size} bytes`);
  const map = await extFileBlockMap(volume, superblock, link);
  if (map === null) throw corrupt(`the symlink in inode ${link.number} has no blocks`);
  const bytes = new Uint8Array(link.size);
  await readMapped(volume, map, bytes, 0);
  return decodeGuestName(bytes);
}
