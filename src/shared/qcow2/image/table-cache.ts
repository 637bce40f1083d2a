/**
 * A bounded write-back cache of metadata tables (L2 tables or refcount blocks), one cluster each,
 * keyed by host offset. Evicting a dirty table first calls `beforeWriteBack`, which is how the
 * image enforces "refcounts on disk before the L2 entries that need them".
 */
import type { BlockFile } from '../io/block-file.ts';
import { readTablesInFileOrder, sortedUnique } from '../io/ordered-reads.ts';
import { Qcow2Error } from '../errors.ts';
import { hex } from '../format/bytes.ts';

export interface CachedTable {
  readonly hostOffset: number;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  dirty: boolean;
}

export class TableCache {
  private readonly tables = new Map<number, CachedTable>();
  private readonly file: BlockFile;
  private readonly tableBytes: number;
  private readonly capacity: number;
  private readonly what: string;
  /** The most recently used table: repeated lookups of one table (a refcount block per cluster) skip the LRU reordering. */
  private newest: CachedTable | null = null;
  beforeWriteBack: () => void = () => {};

  constructor(file: BlockFile, tableBytes: number, capacityBytes: number, what: string) {
    this.file = file;
    this.tableBytes = tableBytes;
    this.capacity = Math.max(4, Math.floor(capacityBytes / tableBytes));
    this.what = what;
  }

  /** The table at hostOffset, read from the file on a miss (past end of file reads as zeros). */
  get(hostOffset: number): CachedTable {
    if (this.newest !== null && this.newest.hostOffset === hostOffset) return this.newest;
    const hit = this.tables.get(hostOffset);
    if (hit) {
      this.tables.delete(hostOffset);
      this.tables.set(hostOffset, hit);
      this.newest = hit;
      return hit;
    }
    const bytes = new Uint8Array(this.tableBytes);
    const count = this.file.read(bytes, hostOffset);
    if (count < this.tableBytes) {
      throw new Qcow2Error('CORRUPT', `${this.what} at ${hex(hostOffset)} lies past the end of the file`);
    }
    return this.insert(hostOffset, bytes, false);
  }

  /**
   * The table at hostOffset for a walk that reads each table once: the cached copy where the cache
   * holds one (it may be newer than the file), otherwise read from the file into `scratch` (one
   * table long) without entering the cache, so such a walk neither evicts what is cached nor
   * leaves a new buffer behind per table. What it returns is valid until `scratch` is used again.
   */
  peek(hostOffset: number, scratch: Uint8Array): Uint8Array {
    const cached = this.newest?.hostOffset === hostOffset ? this.newest : this.tables.get(hostOffset);
    if (cached !== undefined) return cached.bytes;
    if (scratch.length !== this.tableBytes) throw new Error(`TableCache.peek: the scratch buffer holds ${scratch.length} bytes, not a table's ${this.tableBytes}`);
    if (this.file.read(scratch, hostOffset) < this.tableBytes) {
      throw new Qcow2Error('CORRUPT', `${this.what} at ${hex(hostOffset)} lies past the end of the file`);
    }
    return scratch;
  }

  /**
   * Visits every table at `offsets` once, in file order: those the cache holds as they are there
   * (they may be newer than the file), the others read from the file in large runs of neighbours
   * without entering the cache, so a walk over every table of a big disk neither evicts what is
   * cached nor issues one read per table. The bytes are only valid during the call.
   */
  scan(offsets: Iterable<number>, visit: (hostOffset: number, bytes: Uint8Array) => void): void {
    const sorted = sortedUnique(offsets);
    const fromFile: number[] = [];
    let next = 0;
    const readPending = (): void => {
      readTablesInFileOrder(this.file, fromFile, this.tableBytes, (offset, bytes, bytesInFile) => {
        if (bytesInFile < this.tableBytes) throw new Qcow2Error('CORRUPT', `${this.what} at ${hex(offset)} lies past the end of the file`);
        visit(offset, bytes);
      });
      fromFile.length = 0;
    };
    for (; next < sorted.length; next++) {
      const offset = sorted[next] ?? 0;
      const cached = this.tables.get(offset);
      if (cached === undefined) {
        fromFile.push(offset);
        continue;
      }
      // Keeps file order: what is pending before this table is visited first.
      readPending();
      visit(offset, cached.bytes);
    }
    readPending();
  }

  /** A new table that is not on disk yet (all zeros, or a copy), marked dirty. */
  create(hostOffset: number, initial?: Uint8Array): CachedTable {
    const bytes = new Uint8Array(this.tableBytes);
    if (initial) bytes.set(initial);
    this.tables.delete(hostOffset);
    return this.insert(hostOffset, bytes, true);
  }

  private insert(hostOffset: number, bytes: Uint8Array, dirty: boolean): CachedTable {
    const table: CachedTable = { hostOffset, bytes, view: new DataView(bytes.buffer), dirty };
    this.tables.set(hostOffset, table);
    this.newest = table;
    this.evictIfFull();
    return table;
  }

  private evictIfFull(): void {
    if (this.tables.size <= this.capacity) return;
    for (const [offset, table] of this.tables) {
      if (this.tables.size <= this.capacity) break;
      if (table.dirty) {
        this.beforeWriteBack();
        this.writeBack(table);
      }
      this.tables.delete(offset);
    }
  }

  private writeBack(table: CachedTable): void {
    this.file.write(table.bytes, table.hostOffset);
    table.dirty = false;
  }

  hasDirty(): boolean {
    for (const table of this.tables.values()) if (table.dirty) return true;
    return false;
  }

  /** Writes every dirty table (caller flushes the file afterwards as its ordering needs). */
  writeDirty(): void {
    for (const table of this.tables.values()) if (table.dirty) this.writeBack(table);
  }

  drop(hostOffset: number): void {
    this.tables.delete(hostOffset);
    if (this.newest?.hostOffset === hostOffset) this.newest = null;
  }

  clear(): void {
    this.tables.clear();
    this.newest = null;
  }
}
