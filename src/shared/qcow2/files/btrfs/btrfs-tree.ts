/**
 * btrfs's B-trees: every tree block found by logical address (through the chunk map), checked
 * before it is believed (its checksum where it is CRC-32C, its filesystem id, its own address, its
 * level, its item table inside the block), and kept in a small cache; items found by key range.
 */
import { crc32c } from '../crc32c.ts';
import type { VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { corrupt, KEY_BYTES, readKey, uint32, uint64, unsupported, type BtrfsKey } from './btrfs-bytes.ts';
import type { ChunkMap } from './btrfs-chunks.ts';
import type { BtrfsSuperblock } from './btrfs-superblock.ts';

const HEADER_BYTES = 101;
const ITEM_BYTES = KEY_BYTES + 8;
const KEY_POINTER_BYTES = KEY_BYTES + 16;
const CACHED_NODES = 128;
/** Items gathered by one search at most (a file read takes its extents a window at a time; a listing or a whole file's map, all at once). */
const MAX_ITEMS = 4 * 1024 * 1024;
/**
 * Tree blocks visited by one search at most: damaged pointers can lead to one subtree many times
 * over (500 pointers a block, 8 levels), and the walk would never end.
 */
const MAX_VISITS = 1 << 20;

export const MAX_KEY: BtrfsKey = { objectId: 2n ** 64n - 1n, type: 255, offset: 2n ** 64n - 1n };

/** A tree's root block and its level. */
export interface TreeRoot {
  logical: number;
  level: number;
}

export interface LeafItem {
  key: BtrfsKey;
  data: Uint8Array;
}

export class TreeReader {
  private readonly cache = new GenerationalCache<number, Uint8Array>(CACHED_NODES / 2);
  private readonly volume: VolumeBytes;
  private readonly superblock: BtrfsSuperblock;
  readonly chunks: ChunkMap;

  constructor(volume: VolumeBytes, superblock: BtrfsSuperblock, chunks: ChunkMap) {
    this.volume = volume;
    this.superblock = superblock;
    this.chunks = chunks;
  }

  /** Every item with min ≤ key ≤ max, in key order (FILESYSTEM_UNSUPPORTED past MAX_ITEMS). */
  async items(root: TreeRoot, min: BtrfsKey, max: BtrfsKey): Promise<LeafItem[]> {
    const found = await this.itemsOrNull(root, min, max);
    if (found === null) throw unsupported(`more than ${MAX_ITEMS} items for one file or folder`);
    return found;
  }

  /** items, or null where there are more than one search gathers (MAX_ITEMS). */
  async itemsOrNull(root: TreeRoot, min: BtrfsKey, max: BtrfsKey): Promise<LeafItem[] | null> {
    const found: LeafItem[] = [];
    return (await this.collect(root.logical, root.level, bound(min), bound(max), found, { visits: 0 })) ? found : null;
  }

  /** The last item with min ≤ key ≤ max, or undefined. */
  async last(root: TreeRoot, min: BtrfsKey, max: BtrfsKey): Promise<LeafItem | undefined> {
    return (await this.items(root, min, max)).at(-1);
  }

  /**
   * Gathers the items from `low` to `high` into `found`; false when it stopped at MAX_ITEMS. `parentKey`: where the pointer to this
   * block is in its parent, whose key must be this block's first.
   */
  private async collect(logical: number, level: number, low: KeyBound, high: KeyBound, found: LeafItem[], search: { visits: number }, parentKey?: Uint8Array): Promise<boolean> {
    if (++search.visits > MAX_VISITS) throw corrupt(`a search visits more than ${MAX_VISITS} tree blocks`);
    const node = await this.node(logical, level);
    // With keys in order in every block, this makes every block reachable under one key only: damage cannot lead a search around a subtree twice.
    if (parentKey !== undefined && !sameBytes(node.subarray(HEADER_BYTES, HEADER_BYTES + KEY_BYTES), parentKey)) throw corrupt(`the tree block at logical ${logical} does not start with the key its parent points to it by`);
    const count = uint32(node, 0x60);
    if (level === 0) {
      // The first item at or after min (items are in key order), then on while at or before max.
      for (let index = firstAtOrAfter(node, count, ITEM_BYTES, low); index < count; index++) {
        const at = HEADER_BYTES + index * ITEM_BYTES;
        if (compareAt(node, at, high) > 0) break;
        const offset = uint32(node, at + KEY_BYTES);
        const size = uint32(node, at + KEY_BYTES + 4);
        if (HEADER_BYTES + offset + size > node.length || HEADER_BYTES + offset < HEADER_BYTES + count * ITEM_BYTES) throw corrupt(`tree block ${logical}'s item ${index} lies outside its data area`);
        if (found.length >= MAX_ITEMS) return false;
        found.push({ key: readKey(node, at), data: node.subarray(HEADER_BYTES + offset, HEADER_BYTES + offset + size) });
      }
      return true;
    }
    // Child i holds keys from its own key up to the next child's: start at the last child whose key is at or before min.
    const first = Math.max(0, firstAtOrAfter(node, count, KEY_POINTER_BYTES, low) - 1);
    for (let index = first; index < count; index++) {
      const at = HEADER_BYTES + index * KEY_POINTER_BYTES;
      if (index > first && compareAt(node, at, high) > 0) break;
      if (index + 1 < count && compareAt(node, at + KEY_POINTER_BYTES, low) <= 0) continue;
      if (!(await this.collect(uint64(node, at + KEY_BYTES, 'a tree pointer'), level - 1, low, high, found, search, node.subarray(at, at + KEY_BYTES)))) return false;
    }
    return true;
  }

  private async node(logical: number, level: number): Promise<Uint8Array> {
    const cached = this.cache.get(logical);
    if (cached !== undefined && cached[0x64] === level) return cached;
    const { nodeBytes } = this.superblock;
    if (logical % this.superblock.sectorBytes !== 0) throw corrupt(`a tree block at logical ${logical}, not on a sector`);
    const node = new Uint8Array(nodeBytes);
    await this.volume.read(node, this.chunks.physical(logical, nodeBytes));
    const where = `the tree block at logical ${logical}`;
    if (this.superblock.crc32cChecksums && uint32(node, 0) !== (~crc32c(node.subarray(0x20)) >>> 0)) throw corrupt(`${where} fails its checksum`);
    if (!node.subarray(0x20, 0x30).every((byte, index) => byte === this.superblock.metadataFsid[index])) throw corrupt(`${where} belongs to another filesystem`);
    if (uint64(node, 0x30, 'a tree block address') !== logical) throw corrupt(`${where} says it is at ${uint64(node, 0x30, 'an address')}`);
    if (node[0x64] !== level) throw corrupt(`${where} is at level ${node[0x64]}, not ${level}`);
    const count = uint32(node, 0x60);
    const stride = level === 0 ? ITEM_BYTES : KEY_POINTER_BYTES;
    if (HEADER_BYTES + count * stride > nodeBytes || (count === 0 && level > 0)) throw corrupt(`${where} claims ${count} items`);
    for (let index = 1; index < count; index++) {
      const at = HEADER_BYTES + index * stride;
      if (compareRaw(node, at - stride, at) >= 0) throw corrupt(`${where} holds keys out of order at ${index}`);
    }
    this.cache.set(logical, node);
    return node;
  }
}

/** A key as six numbers, to compare with keys in place (no BigInt made per comparison). */
interface KeyBound {
  objectHigh: number;
  objectLow: number;
  type: number;
  offsetHigh: number;
  offsetLow: number;
}

function bound(key: BtrfsKey): KeyBound {
  return { objectHigh: Number(key.objectId >> 32n), objectLow: Number(key.objectId & 0xffffffffn), type: key.type, offsetHigh: Number(key.offset >> 32n), offsetLow: Number(key.offset & 0xffffffffn) };
}

/** The key at `at` in a tree block against `key`: negative, zero or positive. */
function compareAt(node: Uint8Array, at: number, key: KeyBound): number {
  return (
    uint32(node, at + 4) - key.objectHigh ||
    uint32(node, at) - key.objectLow ||
    (node[at + 8] as number) - key.type ||
    uint32(node, at + 13) - key.offsetHigh ||
    uint32(node, at + 9) - key.offsetLow
  );
}

/** The index of the first of `count` entries (of `stride` bytes, each starting with its key) whose key is at or after `key`. */
function firstAtOrAfter(node: Uint8Array, count: number, stride: number, key: KeyBound): number {
  let low = 0;
  let high = count;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (compareAt(node, HEADER_BYTES + middle * stride, key) < 0) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** The key at `a` against the key at `b`, both in `node`. */
function compareRaw(node: Uint8Array, a: number, b: number): number {
  return (
    uint32(node, a + 4) - uint32(node, b + 4) ||
    uint32(node, a) - uint32(node, b) ||
    (node[a + 8] as number) - (node[b + 8] as number) ||
    uint32(node, a + 13) - uint32(node, b + 13) ||
    uint32(node, a + 9) - uint32(node, b + 9)
  );
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, index) => byte === b[index]);
}
