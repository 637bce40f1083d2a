/**
 * An XFS folder's names: kept in the inode itself (short form) or in folder data blocks, whichever
 * of the block, leaf and node forms the folder has grown to. The leaf and node forms add hash
 * indexes after the data blocks (at 32 GiB and 64 GiB in the folder's own offsets): a listing needs
 * only the data blocks, which every form keeps from offset 0.
 */
import { readMapped } from '../block-map.ts';
import type { VolumeBytes } from '../filesystem.ts';
import { guestFileName } from '../linux-names.ts';
import { checksumHolds, corrupt, uint16, uint32, uint64, unsupported } from './xfs-bytes.ts';
import { xfsBlockMap, type XfsBlockMap } from './xfs-extents.ts';
import { FORMAT_LOCAL, type XfsInode } from './xfs-inodes.ts';
import type { XfsSuperblock } from './xfs-superblock.ts';

/** Where the hash index starts in a folder's offsets: the data blocks lie below it. */
const DATA_SPACE_BYTES = 32 * 2 ** 30;
/** Folder data read for one folder at most (~20 million names). */
const MAX_FOLDER_BYTES = 2 ** 30;
const BLOCK_MAGIC_V4 = 0x58443242; // "XD2B": a folder in one block, its hash index at the block's end
const DATA_MAGIC_V4 = 0x58443244; // "XD2D"
const BLOCK_MAGIC_V5 = 0x58444233; // "XDB3"
const DATA_MAGIC_V5 = 0x58444433; // "XDD3"
const FREE_TAG = 0xffff;

/** The folder's names (without "." and "..") and the inode each leads to. */
export async function readFolder(volume: VolumeBytes, superblock: XfsSuperblock, folder: XfsInode): Promise<Map<string, number>> {
  const names = new Map<string, number>();
  if (folder.format === FORMAT_LOCAL) {
    readShortForm(superblock, folder, names);
    return names;
  }
  const map = await xfsBlockMap(volume, superblock, folder);
  const { folderBlockBytes, blockBytes } = superblock;
  const blocksPerFolderBlock = folderBlockBytes / blockBytes;
  const dataBlocks = folderDataBlocks(map, blocksPerFolderBlock, folder);
  const block = new Uint8Array(folderBlockBytes);
  for (const first of dataBlocks) {
    await readMapped(volume, map, block, first * blockBytes);
    readDataBlock(superblock, folder, block, first, names);
  }
  return names;
}

/** The first file block of each folder block that holds data (in the data space, written), in order. */
function folderDataBlocks(map: XfsBlockMap, blocksPerFolderBlock: number, folder: XfsInode): number[] {
  const dataSpaceBlocks = DATA_SPACE_BYTES / map.blockBytes;
  const firsts: number[] = [];
  let mappedBytes = 0;
  for (const run of map.runs) {
    if (run.fileBlock >= dataSpaceBlocks) break;
    const end = Math.min(run.fileBlock + run.count, dataSpaceBlocks);
    mappedBytes += (end - run.fileBlock) * map.blockBytes;
    if (mappedBytes > MAX_FOLDER_BYTES) throw unsupported(`folder inode ${folder.number} holds more than ${MAX_FOLDER_BYTES} bytes of names (tens of millions), more than Cowbell lists`);
    // A folder block is whole or absent: every block of it must be mapped (readMapped would read a hole as zeros).
    for (let fileBlock = run.fileBlock; fileBlock < end; fileBlock++) {
      const first = fileBlock - (fileBlock % blocksPerFolderBlock);
      if (firsts.at(-1) === first) continue;
      if (!wholeFolderBlock(map, first, blocksPerFolderBlock)) throw corrupt(`folder inode ${folder.number}'s block at ${first} is only partly allocated`);
      firsts.push(first);
    }
  }
  if (map.unwritten.some((run) => run.fileBlock < dataSpaceBlocks)) throw corrupt(`folder inode ${folder.number} has preallocated name blocks`);
  return firsts;
}

/** Whether every file block of [first, first + count) is in a written run (runs in file order, not overlapping). */
function wholeFolderBlock(map: XfsBlockMap, first: number, count: number): boolean {
  if (count === 1) return true; // asked for a block found in a run
  const { runs } = map;
  let low = 0;
  let high = runs.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    const run = runs[middle]!;
    if (run.fileBlock + run.count <= first) low = middle + 1;
    else high = middle;
  }
  let next = first;
  for (let index = low; index < runs.length && next < first + count; index++) {
    const run = runs[index]!;
    if (run.fileBlock > next) return false;
    next = run.fileBlock + run.count;
  }
  return next >= first + count;
}

/** A short-form folder in the inode: a header (entry count, whether inode numbers take 8 bytes, the parent), then the entries. */
function readShortForm(superblock: XfsSuperblock, folder: XfsInode, names: Map<string, number>): void {
  const bytes = folder.dataFork;
  if (folder.size > bytes.length || folder.size < 6) throw corrupt(`folder inode ${folder.number} keeps ${folder.size} bytes of names in its inode`);
  const end = folder.size;
  const count = bytes[0] as number;
  const numberBytes = (bytes[1] as number) === 0 ? 4 : 8;
  let at = 2 + numberBytes;
  const typeBytes = superblock.hasFileType ? 1 : 0;
  for (let index = 0; index < count; index++) {
    if (at + 3 > end) throw corrupt(`folder inode ${folder.number}'s entry ${index} runs past its names`);
    const nameLength = bytes[at] as number;
    const nameStart = at + 3; // the length, then a 2-byte offset (where the entry would lie in a data block)
    const numberStart = nameStart + nameLength + typeBytes;
    if (nameLength === 0 || numberStart + numberBytes > end) throw corrupt(`folder inode ${folder.number}'s entry ${index} (a name of ${nameLength} bytes) runs past its names`);
    const number = numberBytes === 4 ? uint32(bytes, numberStart) : uint64(bytes, numberStart, 'an inode number');
    addName(names, bytes.subarray(nameStart, nameStart + nameLength), number, folder);
    at = numberStart + numberBytes;
  }
}

/** One folder data block's entries: after its header, until the hash index (block form) or the block's end. */
function readDataBlock(superblock: XfsSuperblock, folder: XfsInode, block: Uint8Array, first: number, names: Map<string, number>): void {
  const v5 = superblock.version === 5;
  const magic = uint32(block, 0);
  const where = `folder inode ${folder.number}'s block at ${first}`;
  const isBlockForm = magic === (v5 ? BLOCK_MAGIC_V5 : BLOCK_MAGIC_V4);
  if (!isBlockForm && magic !== (v5 ? DATA_MAGIC_V5 : DATA_MAGIC_V4)) throw corrupt(`${where} has no folder block signature`);
  if (v5 && !checksumHolds(block, 4)) throw corrupt(`${where} fails its checksum`);
  if (v5 && uint64(block, 40, 'a folder block owner') !== folder.number) throw corrupt(`${where} belongs to inode ${uint64(block, 40, 'an owner')}`);
  const start = v5 ? 64 : 16;
  let end = block.length;
  if (isBlockForm) {
    // The tail: the hash index's entry count and stale count; the index (8 bytes an entry) lies before it.
    const leafCount = uint32(block, block.length - 8);
    end = block.length - 8 - leafCount * 8;
    if (leafCount > block.length || end < start) throw corrupt(`${where} claims ${leafCount} index entries`);
  }
  const typeBytes = superblock.hasFileType ? 1 : 0;
  let at = start;
  while (at < end) {
    if (uint16(block, at) === FREE_TAG) {
      const length = uint16(block, at + 2);
      if (length < 8 || length % 8 !== 0 || at + length > end) throw corrupt(`${where} has a free space of ${length} bytes at ${at}`);
      at += length;
      continue;
    }
    if (at + 16 > end) throw corrupt(`${where} has an entry at ${at} past its end`);
    const nameLength = block[at + 8] as number;
    const length = Math.ceil((8 + 1 + nameLength + typeBytes + 2) / 8) * 8;
    if (nameLength === 0 || at + length > end) throw corrupt(`${where} has an entry of ${length} bytes at ${at}`);
    const number = uint64(block, at, 'an inode number');
    addName(names, block.subarray(at + 9, at + 9 + nameLength), number, folder);
    at += length;
  }
}

function addName(names: Map<string, number>, nameBytes: Uint8Array, number: number, folder: XfsInode): void {
  if (nameBytes.includes(0x2f) || nameBytes.includes(0)) throw corrupt(`folder inode ${folder.number} holds a name with '/' or NUL in it`);
  const name = guestFileName(nameBytes);
  if (name === '.' || name === '..') return;
  if (number === 0) throw corrupt(`folder inode ${folder.number}'s entry ${name} leads to inode 0`);
  names.set(name, number);
}
