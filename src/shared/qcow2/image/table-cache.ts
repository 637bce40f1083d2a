/**
 * A bounded write-back cache of metadata tables (L2 tables or refcount blocks), one cluster each,
 * keyed by host offset. Evicting a dirty table first calls `beforeWriteBack`, which is how the
 * image enforces "refcounts on disk before the L2 entries that need them".
 */
import type { BlockFile } from '../io/block-file.ts';
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
