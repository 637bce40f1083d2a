/**
 * A directory's $I30 index: entries in $INDEX_ROOT, and in the INDX blocks of $INDEX_ALLOCATION the
 * entries' sub-node pointers lead to. Walked in order (as the B+ tree sorts names), each block
 * visited once and the depth bounded, so a hostile index that points back at itself ends in
 * FILESYSTEM_CORRUPT instead of a loop.
 */
import { type FileName, parseFileName } from './attribute-values.ts';
import { corrupt, isPowerOfTwo, LeBytes } from './bytes.ts';
import { applyFixups } from './fixups.ts';
import { ATTRIBUTE } from './mft-record.ts';
import type { NtfsFile, NtfsVolume } from './ntfs-volume.ts';

export const DIRECTORY_INDEX_NAME = '$I30';
const ENTRY_HAS_SUBNODE = 0x01;
const ENTRY_IS_LAST = 0x02;
const INDEX_HEADER_IN_ROOT = 0x10;
const INDEX_HEADER_IN_BLOCK = 0x18;
/** B+ trees of directories with millions of names are a few levels deep; far more means a cycle or a forgery. */
const MAX_INDEX_DEPTH = 32;
const VCN_SECTOR_SIZE = 512;

export interface DirectoryEntry {
  reference: bigint;
  fileName: FileName;
}

interface IndexNode {
  entries: { reference: bigint; key: Uint8Array | null; subnodeVcn: number | null }[];
}

function parseIndexEntries(bytes: LeBytes, headerOffset: number, what: string): IndexNode {
  const firstEntry = headerOffset + bytes.u32(headerOffset);
  const end = headerOffset + bytes.u32(headerOffset + 4);
  if (end > bytes.length || firstEntry < headerOffset + 0x10 || firstEntry >= end) throw corrupt(`${what}: index entries ${firstEntry}..${end} outside its ${bytes.length} bytes`);
  const entries: IndexNode['entries'] = [];
  let position = firstEntry;
  for (;;) {
    if (position + 0x10 > end) throw corrupt(`${what}: index entries run past their end without a last entry`);
    const length = bytes.u16(position + 8);
    const keyLength = bytes.u16(position + 0x0a);
    const flags = bytes.u16(position + 0x0c);
    if (length < 0x10 || length % 8 !== 0 || position + length > end) throw corrupt(`${what}: index entry at ${position} has length ${length}`);
    const hasSubnode = (flags & ENTRY_HAS_SUBNODE) !== 0;
    const isLast = (flags & ENTRY_IS_LAST) !== 0;
    if (0x10 + keyLength + (hasSubnode ? 8 : 0) > length) throw corrupt(`${what}: index entry at ${position} has a key of ${keyLength} bytes in ${length}`);
    entries.push({
      reference: bytes.u64Big(position),
      key: isLast ? null : bytes.slice(position + 0x10, keyLength),
      subnodeVcn: hasSubnode ? bytes.u64(position + length - 8, 'a sub-node VCN') : null,
    });
    if (isLast) return { entries };
    position += length;
  }
}

/** Every name in a directory's index, in index order (DOS aliases included: callers choose). */
export async function readDirectoryIndex(volume: NtfsVolume, directory: NtfsFile): Promise<DirectoryEntry[]> {
  const what = `directory index of MFT record ${directory.record.recordNumber}`;
  const roots = directory.attributes.filter((attribute) => attribute.type === ATTRIBUTE.indexRoot && attribute.name === DIRECTORY_INDEX_NAME);
  const root = roots[0];
  if (roots.length !== 1 || root === undefined || !root.resident) throw corrupt(`${what}: no resident $INDEX_ROOT`);
  const rootBytes = new LeBytes(root.value, `${what} $INDEX_ROOT`);
  if (rootBytes.u32(0) !== ATTRIBUTE.fileName) throw corrupt(`${what}: indexes attribute 0x${rootBytes.u32(0).toString(16)}, not file names`);
  const blockSize = rootBytes.u32(8);
  if (!isPowerOfTwo(blockSize) || blockSize < 512 || blockSize > 65536) throw corrupt(`${what}: index blocks of ${blockSize} bytes`);
  const vcnSize = blockSize >= volume.geometry.clusterSize ? volume.geometry.clusterSize : VCN_SECTOR_SIZE;
  const allocation = volume.attributeStream(directory, ATTRIBUTE.indexAllocation, DIRECTORY_INDEX_NAME);
  const visited = new Set<number>();
  const result: DirectoryEntry[] = [];

  const readBlock = async (vcn: number): Promise<IndexNode> => {
    if (allocation === null) throw corrupt(`${what}: a sub-node without $INDEX_ALLOCATION`);
    if (visited.has(vcn)) throw corrupt(`${what}: index block at VCN ${vcn} is reached twice (a cycle)`);
    visited.add(vcn);
    const offset = vcn * vcnSize;
    if (!Number.isSafeInteger(offset) || offset + blockSize > allocation.size) throw corrupt(`${what}: index block at VCN ${vcn} lies past its allocation`);
    const block = new Uint8Array(blockSize);
    await allocation.read(block, offset, `${what} $INDEX_ALLOCATION`);
    const blockWhat = `${what} block at VCN ${vcn}`;
    applyFixups(block, 'INDX', blockWhat);
    const bytes = new LeBytes(block, blockWhat);
    if (bytes.u64(0x10, 'its VCN') !== vcn) throw corrupt(`${blockWhat} says it is at VCN ${bytes.u64(0x10, 'its VCN')}`);
    return parseIndexEntries(bytes, INDEX_HEADER_IN_BLOCK, blockWhat);
  };

  const walk = async (node: IndexNode, depth: number): Promise<void> => {
    if (depth > MAX_INDEX_DEPTH) throw corrupt(`${what}: deeper than ${MAX_INDEX_DEPTH} levels`);
    for (const entry of node.entries) {
      if (entry.subnodeVcn !== null) await walk(await readBlock(entry.subnodeVcn), depth + 1);
      if (entry.key !== null) result.push({ reference: entry.reference, fileName: parseFileName(entry.key, what) });
    }
  };
  await walk(parseIndexEntries(rootBytes, INDEX_HEADER_IN_ROOT, `${what} $INDEX_ROOT`), 0);
  return result;
}
