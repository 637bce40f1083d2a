/**
 * The refcounts as stored on disk, read for check without trusting them: every refcount table
 * entry is classified (valid, unaligned, reserved bits, outside the file) instead of thrown on,
 * and blocks are read fresh from the file through a small bounded cache.
 */
import type { BlockFile } from '../io/block-file.ts';
import { view } from '../format/bytes.ts';
import { getRefcount, setRefcount } from '../format/entries.ts';

export type BlockState = 'none' | 'valid' | 'unaligned' | 'reserved-bits' | 'outside';

const CACHED_BLOCKS = 64;
const TWO_32 = 0x1_0000_0000;

export interface RefcountBlock {
  readonly index: number;
  readonly offset: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
}

export class StoredRefcounts {
  readonly clusterBytes: number;
  readonly order: number;
  readonly entriesPerBlock: number;
  readonly tableEntries: number;
  private readonly file: BlockFile;
  private readonly table: DataView;
  private readonly fileClusters: number;
  private readonly cache = new Map<number, RefcountBlock>();
  private last: RefcountBlock | null = null;

  constructor(file: BlockFile, tableBytes: Uint8Array, clusterBytes: number, order: number, fileSize: number) {
    this.file = file;
    this.table = view(tableBytes);
    this.tableEntries = Math.floor(tableBytes.length / 8);
    this.clusterBytes = clusterBytes;
    this.order = order;
    this.entriesPerBlock = (clusterBytes * 8) / 2 ** order;
    this.fileClusters = Math.ceil(fileSize / clusterBytes);
  }

  /** Reads the refcount table the header names (validated to lie in the file when the image opened). */
  static read(file: BlockFile, tableOffset: number, tableClusters: number, clusterBytes: number, order: number): StoredRefcounts {
    const tableBytes = new Uint8Array(tableClusters * clusterBytes);
    const count = file.read(tableBytes, tableOffset);
    tableBytes.fill(0, count);
    return new StoredRefcounts(file, tableBytes, clusterBytes, order, file.size());
  }

  /** The block offset an entry names (bits 9-63); meaningful only when state() is 'valid'. */
  blockOffset(index: number): number {
    if (index >= this.tableEntries) return 0;
    return this.table.getUint32(index * 8) * TWO_32 + ((this.table.getUint32(index * 8 + 4) & 0xffff_fe00) >>> 0);
  }

  state(index: number): BlockState {
    if (index >= this.tableEntries) return 'none';
    const high = this.table.getUint32(index * 8);
    const low = this.table.getUint32(index * 8 + 4);
    if (high === 0 && low === 0) return 'none';
    if ((low & 0x1ff) !== 0) return 'reserved-bits';
    const offset = this.blockOffset(index);
    if (offset % this.clusterBytes !== 0) return 'unaligned';
    if (high > 0x1f_ffff || offset / this.clusterBytes >= this.fileClusters) return 'outside';
    return 'valid';
  }

  /** A valid block's bytes (zero-filled where the file ends inside it), or null. */
  block(index: number): RefcountBlock | null {
    const hit = this.cache.get(index);
    if (hit) return hit;
    if (this.state(index) !== 'valid') return null;
    // A walk over every block of a big disk would otherwise leave a cluster of garbage per block:
    // the evicted block's bytes take the new one (cached blocks are only read, never kept by callers).
    let recycled: Uint8Array | undefined;
    if (this.cache.size >= CACHED_BLOCKS) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) {
        recycled = this.cache.get(oldest)?.bytes;
        this.cache.delete(oldest);
        if (this.last?.index === oldest) this.last = null;
      }
    }
    const block = this.readInto(index, recycled ?? new Uint8Array(this.clusterBytes));
    this.cache.set(index, block);
    return block;
  }

  /** A fresh, private copy of a valid block, for changing and writing back. */
  readBlock(index: number): RefcountBlock {
    return this.readInto(index, new Uint8Array(this.clusterBytes));
  }

  private readInto(index: number, bytes: Uint8Array): RefcountBlock {
    const offset = this.blockOffset(index);
    const count = this.file.read(bytes, offset);
    bytes.fill(0, count);
    return { index, offset, bytes, view: view(bytes) };
  }

  get(cluster: number): number {
    // Lookups come mostly in order: the last block answers most of them without a division or a map lookup.
    const last = this.last;
    if (last !== null) {
      const entry = cluster - last.index * this.entriesPerBlock;
      if (entry >= 0 && entry < this.entriesPerBlock && Number.isInteger(entry)) return entryOf(last, entry, this.order);
    }
    const index = Math.floor(cluster / this.entriesPerBlock);
    const block = this.block(index);
    if (block !== null) this.last = block;
    return block === null ? 0 : entryOf(block, cluster - index * this.entriesPerBlock, this.order);
  }

  set(block: RefcountBlock, entry: number, value: number): void {
    setRefcount(block.bytes, block.view, entry, this.order, value);
  }

  entry(block: RefcountBlock, entry: number): number {
    return entryOf(block, entry, this.order);
  }

  /** Forgets cached blocks after the caller wrote some. */
  clear(): void {
    this.cache.clear();
    this.last = null;
  }
}


function entryOf(block: RefcountBlock, entry: number, order: number): number {
  if (order < 6) return getRefcount(block.bytes, block.view, entry, order);
  try {
    return getRefcount(block.bytes, block.view, entry, order);
  } catch {
    // A 64-bit refcount beyond 2^53: no reference count can be that large, so it reads as "too many".
    return Number.MAX_SAFE_INTEGER;
  }
}
