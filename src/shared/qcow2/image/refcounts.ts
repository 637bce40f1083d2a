/**
 * Host cluster refcounts (qcow2.txt "Host cluster management"): the refcount table, its blocks,
 * allocation of free clusters, and the crash-safe order of refcount changes:
 *  - increments may reach the disk at any time (at worst a leak);
 *  - decrements wait in `pending` until the pointers they drop are durable (`applyPendingDecrements`);
 *  - a new refcount block is durable before the table entry that points to it;
 *  - a relocated refcount table is durable before the header switches to it.
 */
import type { BlockFile } from '../io/block-file.ts';
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned, view } from '../format/bytes.ts';
import { decodeRefcountTableEntry, encodeRefcountTableEntry, getRefcount, maxRefcount, refcountIsZero, refcountBlockOffset, refcountTableEntryReserved, setRefcount } from '../format/entries.ts';
import { MAX_HOST_OFFSET, MAX_REFTABLE_BYTES } from '../format/limits.ts';
import { isAllZero } from '../format/zeroes.ts';
import { TableCache } from './table-cache.ts';

/** A cluster index from an offset that was not cluster-aligned (or past any file) must never reach refcount arithmetic. */
function assertClusterIndex(clusterIndex: number): void {
  if (!Number.isSafeInteger(clusterIndex) || clusterIndex < 0) throw new Qcow2Error('CORRUPT', `A refcount was asked for cluster ${clusterIndex}, which no cluster-aligned offset names`);
}

export interface RefcountLayout {
  clusterBits: number;
  refcountOrder: number;
  tableOffset: number;
  tableClusters: number;
}

interface PendingDecrement {
  clusterIndex: number;
  count: number;
}

export class Refcounts {
  private readonly file: BlockFile;
  readonly clusterBits: number;
  readonly clusterBytes: number;
  readonly order: number;
  readonly entriesPerBlock: number;
  readonly max: number;
  tableOffset: number;
  tableClusters: number;
  private table: Uint8Array;
  private tableView: DataView;
  private readonly dirtyTableEntries = new Set<number>();
  /** Blocks allocated since the last flush: they must reach the disk before their table entries. */
  private readonly newBlocks = new Set<number>();
  private relocatedFrom: { offset: number; clusters: number } | null = null;
  private readonly pending: PendingDecrement[] = [];
  private freeHint = 0;
  readonly cache: TableCache;
  /** Called whenever a cluster becomes metadata or stops being it (for overlap checks). */
  onMetadataCluster: (clusterIndex: number, isMetadata: boolean) => void = () => {};

  constructor(file: BlockFile, layout: RefcountLayout, table: Uint8Array, cacheBytes = 4 * 1024 * 1024) {
    this.file = file;
    this.clusterBits = layout.clusterBits;
    this.clusterBytes = 2 ** layout.clusterBits;
    this.order = layout.refcountOrder;
    this.entriesPerBlock = (this.clusterBytes * 8) / 2 ** layout.refcountOrder;
    this.max = maxRefcount(layout.refcountOrder);
    this.tableOffset = layout.tableOffset;
    this.tableClusters = layout.tableClusters;
    this.table = table;
    this.tableView = view(table);
    this.cache = new TableCache(file, this.clusterBytes, cacheBytes, 'Refcount block');
  }

  static load(file: BlockFile, layout: RefcountLayout, cacheBytes?: number): Refcounts {
    const clusterBytes = 2 ** layout.clusterBits;
    const length = layout.tableClusters * clusterBytes;
    if (length > MAX_REFTABLE_BYTES) throw new Qcow2Error('CORRUPT', 'Refcount table too large');
    const table = new Uint8Array(length);
    if (file.read(table, layout.tableOffset) < length) throw new Qcow2Error('TRUNCATED', 'The refcount table is cut short: the image is truncated');
    return new Refcounts(file, layout, table, cacheBytes);
  }

  get tableEntries(): number {
    return this.table.length / 8;
  }

  /**
   * The entries up to the last one with any bit set: a scan over the table stops there (the rest
   * name no block). Found with native zero tests, as a scan's own loop over the thousands of empty
   * entries of a table cost milliseconds in a command's short, unoptimised run.
   */
  usedTableEntries(): number {
    // The table is whole clusters (multiples of 512 bytes): each pass leaves `end` a multiple of its step.
    let end = this.table.length;
    for (const step of [4096, 64, 8]) {
      while (end > 0 && isAllZero(this.table.subarray(Math.max(0, end - step), end))) end = Math.max(0, end - step);
    }
    return end / 8;
  }

  /** The offset of refcount block `tableIndex`, 0 if none; CORRUPT if the entry is invalid. */
  blockOffset(tableIndex: number): number {
    const blockOffset = this.blockOffsetIfValid(tableIndex);
    if (blockOffset === null) {
      const entry = decodeRefcountTableEntry(this.tableView, tableIndex * 8);
      throw new Qcow2Error('CORRUPT', `Refcount block ${tableIndex} has an invalid offset ${hex(entry.blockOffset)}`);
    }
    return blockOffset;
  }

  /** As blockOffset, but null for an invalid entry: for scans over a whole table, where throwing per entry costs seconds. */
  blockOffsetIfValid(tableIndex: number): number | null {
    if (tableIndex >= this.tableEntries) return 0;
    // Looked up once per cluster by scans: read in place rather than decoded into an object.
    const blockOffset = refcountBlockOffset(this.tableView, tableIndex * 8);
    if (blockOffset === 0) return 0;
    if (refcountTableEntryReserved(this.tableView, tableIndex * 8) || !isAligned(blockOffset, this.clusterBytes) || blockOffset > MAX_HOST_OFFSET - this.clusterBytes) return null;
    return blockOffset;
  }

  get(clusterIndex: number): number {
    assertClusterIndex(clusterIndex);
    const tableIndex = Math.floor(clusterIndex / this.entriesPerBlock);
    const blockOffset = this.blockOffset(tableIndex);
    if (blockOffset === 0) return 0;
    const block = this.cache.get(blockOffset);
    return getRefcount(block.bytes, block.view, clusterIndex % this.entriesPerBlock, this.order);
  }

  /** Refcount 0: nothing uses the cluster (an out-of-range 64-bit refcount is a use all the same). */
  private isFree(clusterIndex: number): boolean {
    assertClusterIndex(clusterIndex);
    const tableIndex = Math.floor(clusterIndex / this.entriesPerBlock);
    const blockOffset = this.blockOffset(tableIndex);
    if (blockOffset === 0) return true;
    const block = this.cache.get(blockOffset);
    return refcountIsZero(block.bytes, block.view, clusterIndex % this.entriesPerBlock, this.order);
  }

  private set(clusterIndex: number, value: number): void {
    const tableIndex = Math.floor(clusterIndex / this.entriesPerBlock);
    const blockOffset = this.blockOffset(tableIndex);
    if (blockOffset === 0) throw new Qcow2Error('INTERNAL', `no refcount block for cluster ${clusterIndex}`);
    const block = this.cache.get(blockOffset);
    setRefcount(block.bytes, block.view, clusterIndex % this.entriesPerBlock, this.order, value);
    block.dirty = true;
  }

  increment(clusterIndex: number, by = 1): void {
    assertClusterIndex(clusterIndex);
    this.ensureBlock(clusterIndex);
    const value = this.get(clusterIndex) + by;
    if (value > this.max) throw new Qcow2Error('INVALID_ARGUMENT', `Cluster ${clusterIndex} would exceed the largest refcount this image can hold (${this.max})`);
    this.set(clusterIndex, value);
  }

  /** Schedules a decrement that takes effect only in applyPendingDecrements, after the caller's pointers are durable. */
  decrementLater(clusterIndex: number, count = 1): void {
    assertClusterIndex(clusterIndex);
    this.pending.push({ clusterIndex, count });
  }

  hasPending(): boolean {
    return this.pending.length > 0;
  }

  /** Allocates `count` contiguous free clusters (refcount 0 -> 1); returns the first host offset. */
  allocate(count: number): number {
    for (;;) {
      const start = this.findFreeRun(count);
      const first = Math.floor(start / this.entriesPerBlock);
      const last = Math.floor((start + count - 1) / this.entriesPerBlock);
      if (last >= this.tableEntries) {
        // The table moves (to clusters it marks used): look again.
        this.growTable(last + 1);
        continue;
      }
      const missing: number[] = [];
      for (let tableIndex = first; tableIndex <= last; tableIndex++) if (this.blockOffset(tableIndex) === 0) missing.push(tableIndex);
      if (missing.length === 0) {
        for (let index = 0; index < count; index++) this.set(start + index, 1);
        if (count === 1) this.freeHint = start + 1;
        return start * this.clusterBytes;
      }
      // The ranges the run reaches into have no refcount blocks yet: they go first, side by side
      // at its start, and the run is looked for again past them. (Placing each at the start of its
      // own range would cut any run longer than a block describes, and no such run would be found.)
      this.placeBlocks(missing, start);
    }
  }

  /** The first run of `count` free clusters from the free hint (a cluster no block describes is free). */
  private findFreeRun(count: number): number {
    let start = this.freeHint;
    for (;;) {
      start = this.firstFree(start);
      let run = 0;
      while (run < count) {
        const clusterIndex = start + run;
        if (!this.isFree(clusterIndex) || this.isPendingTableCluster(clusterIndex)) break;
        run++;
      }
      if (run === count) return start;
      start += run + 1;
    }
  }

  /**
   * The first cluster from `from` on with refcount 0, a refcount block at a time: the first
   * allocation of a command passes over every cluster in use, and a lookup per cluster cost
   * milliseconds per thousand clusters in a short run.
   */
  private firstFree(from: number): number {
    for (let clusterIndex = from; ; ) {
      const tableIndex = Math.floor(clusterIndex / this.entriesPerBlock);
      const blockOffset = this.blockOffset(tableIndex);
      if (blockOffset === 0) return clusterIndex;
      const block = this.cache.get(blockOffset);
      const blockEnd = (tableIndex + 1) * this.entriesPerBlock;
      for (let index = clusterIndex - tableIndex * this.entriesPerBlock; clusterIndex < blockEnd; clusterIndex++, index++) {
        if (refcountIsZero(block.bytes, block.view, index, this.order) && !this.isPendingTableCluster(clusterIndex)) return clusterIndex;
      }
    }
  }

  /**
   * New refcount blocks for the table entries `tableIndexes`, in the free clusters from `at` on:
   * each of those clusters lies in a range one of the new blocks (or one already there) describes.
   */
  private placeBlocks(tableIndexes: readonly number[], at: number): void {
    tableIndexes.forEach((tableIndex, position) => {
      const blockOffset = (at + position) * this.clusterBytes;
      this.cache.create(blockOffset);
      encodeRefcountTableEntry(this.tableView, tableIndex * 8, blockOffset);
      this.dirtyTableEntries.add(tableIndex);
      this.newBlocks.add(blockOffset);
    });
    for (let position = 0; position < tableIndexes.length; position++) {
      this.set(at + position, 1);
      this.onMetadataCluster(at + position, true);
    }
  }

  private isPendingTableCluster(clusterIndex: number): boolean {
    if (this.relocatedFrom === null) return false;
    const first = this.relocatedFrom.offset / this.clusterBytes;
    return clusterIndex >= first && clusterIndex < first + this.relocatedFrom.clusters;
  }

  /** Makes sure a refcount block covers clusterIndex, placing a new one inside its own range. */
  private ensureBlock(clusterIndex: number): void {
    const tableIndex = Math.floor(clusterIndex / this.entriesPerBlock);
    if (this.blockOffset(tableIndex) !== 0) return;
    if (tableIndex >= this.tableEntries) this.growTable(tableIndex + 1);
    if (this.blockOffset(tableIndex) !== 0) return;
    // The range is entirely free (no block describes it): the block describes itself, placed at
    // the first cluster of its range that the file does not use for the new refcount table.
    let blockCluster = tableIndex * this.entriesPerBlock;
    while (this.isTableCluster(blockCluster)) blockCluster++;
    this.placeBlocks([tableIndex], blockCluster);
  }

  private isTableCluster(clusterIndex: number): boolean {
    const first = this.tableOffset / this.clusterBytes;
    return clusterIndex >= first && clusterIndex < first + this.tableClusters;
  }

  /**
   * Moves the refcount table to a larger place at the end of the refcount-covered space. The new
   * table is written and made durable at the next flush, before the header points to it.
   */
  private growTable(minEntries: number): void {
    const entriesPerCluster = this.clusterBytes / 8;
    let newClusters = Math.max(this.tableClusters * 2, Math.ceil((minEntries * 1.5) / entriesPerCluster));
    if (newClusters * this.clusterBytes > MAX_REFTABLE_BYTES) {
      newClusters = Math.ceil(minEntries / entriesPerCluster) + 1;
      if (newClusters * this.clusterBytes > MAX_REFTABLE_BYTES) throw new Qcow2Error('NO_SPACE', 'The image has reached the largest size its refcount table can describe');
    }
    const coveredClusters = this.tableEntries * this.entriesPerBlock;
    // Everything allocated so far lies in the covered range, so past it nothing is in use.
    const newTableCluster = Math.max(coveredClusters, Math.ceil(this.file.size() / this.clusterBytes));
    const newTable = new Uint8Array(newClusters * this.clusterBytes);
    newTable.set(this.table);
    if (this.relocatedFrom === null) this.relocatedFrom = { offset: this.tableOffset, clusters: this.tableClusters };
    else this.decrementTableClusters(this.tableOffset, this.tableClusters);
    this.table = newTable;
    this.tableView = view(newTable);
    this.tableOffset = newTableCluster * this.clusterBytes;
    this.tableClusters = newClusters;
    for (let index = 0; index < this.tableEntries; index++) this.dirtyTableEntries.add(index);
    // Blocks for the new table's own clusters; each is self-describing or covers the table.
    for (let cluster = newTableCluster; cluster < newTableCluster + newClusters; cluster++) {
      const tableIndex = Math.floor(cluster / this.entriesPerBlock);
      if (tableIndex >= this.tableEntries) throw new Qcow2Error('INTERNAL', 'refcount table cannot describe itself');
      this.increment(cluster);
      this.onMetadataCluster(cluster, true);
    }
  }

  private decrementTableClusters(offset: number, clusters: number): void {
    for (let index = 0; index < clusters; index++) this.decrementLater(offset / this.clusterBytes + index);
  }

  /**
   * Phase 1 of a flush: refcount increments, new blocks, then the table entries and (if the table
   * moved) the new table and the header that points to it. Returns true if the header must be
   * rewritten with the new table location (the caller does it, then calls finishRelocation).
   */
  writeIncrements(): boolean {
    this.cache.writeDirty();
    if (this.dirtyTableEntries.size === 0) return false;
    if (this.newBlocks.size > 0) this.file.flush();
    if (this.relocatedFrom !== null) {
      this.file.write(this.table, this.tableOffset);
    } else {
      for (const tableIndex of this.dirtyTableEntries) this.file.write(this.table.subarray(tableIndex * 8, tableIndex * 8 + 8), this.tableOffset + tableIndex * 8);
    }
    this.dirtyTableEntries.clear();
    this.newBlocks.clear();
    return this.relocatedFrom !== null;
  }

  /** After the header points to the new table: the old table's clusters are freed later. */
  finishRelocation(): void {
    if (this.relocatedFrom === null) return;
    const old = this.relocatedFrom;
    this.relocatedFrom = null;
    this.decrementTableClusters(old.offset, old.clusters);
  }

  /** Last phase of a flush: the decrements whose pointers are gone from disk. Returns clusters freed. */
  applyPendingDecrements(): number[] {
    const freed: number[] = [];
    const work = this.pending.splice(0);
    for (const { clusterIndex, count } of work) {
      const current = this.get(clusterIndex);
      if (current < count) throw new Qcow2Error('CORRUPT', `Refcount of cluster ${clusterIndex} would drop below zero`);
      this.set(clusterIndex, current - count);
      if (current - count === 0) {
        freed.push(clusterIndex);
        if (clusterIndex < this.freeHint) this.freeHint = clusterIndex;
        this.onMetadataCluster(clusterIndex, false);
      }
    }
    this.cache.writeDirty();
    return freed;
  }

  /** Every cluster the table's blocks describe, for scans (check, usage). */
  coveredClusters(): number {
    return this.tableEntries * this.entriesPerBlock;
  }

  tableBytes(): Uint8Array {
    return this.table;
  }

  resetHint(): void {
    this.freeHint = 0;
  }
}
