/**
 * One pass over the mappings of every state of a disk (the current state and each snapshot), in
 * batches of L1 indexes, that yields both what the tree and what the space figures need:
 *
 * - the distance between every two states (guest clusters mapped differently: what was written
 *   between them), counted where their L2 tables differ; an L2 table two states share counts
 *   nothing and is not even read for it;
 * - each state's exclusive and shared bytes, from each distinct L2 table measured once.
 *
 * Each batch's tables are read in file order in large runs (`TableCache.scan`), and only the
 * tables of L1 indexes where states differ are kept while the batch is compared, so memory stays
 * bounded by the batch budget plus one small record per distinct L2 table, whatever the disk's size.
 */
import { imageFileHoles } from '../image/file-holes.ts';
import type { L1Table, Qcow2Image } from '../image/image.ts';
import type { HoleList } from '../io/hole-aware-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { tableDistances } from './mapping-distance.ts';
import { CompressedClusters } from './compressed-clusters.ts';
import { MARK_METADATA, measureTable, RefcountLookup, type TableUsage } from './table-usage.ts';

export interface MappedState {
  l1: L1Table;
  /** Its own L1 table's clusters count as its exclusive bytes (a snapshot's, not the current state's). */
  ownsL1: boolean;
}

export interface StateUsage {
  exclusiveBytes: number;
  sharedBytes: number;
}

export interface MappingPassOptions {
  /** Count each state's exclusive and shared bytes (reads every L2 table). */
  usage: boolean;
  /** Count the distance between every two states (reads the L2 tables where states differ). */
  distances: boolean;
  /** Guest clusters past this are not counted in distances (a snapshot's VM state area). */
  guestClusters: number;
  /** With usage: marks data clusters (MARK_DATA) and L2 tables (MARK_METADATA) here, one byte per file cluster. */
  marks?: Uint8Array | null;
  job?: JobContext;
  /** What a batch may keep of the tables it compares (a test makes it tiny to cross many batch boundaries). */
  batchTableBytes?: number;
}

/** What a batch may keep of the tables it compares, by default. */
const BATCH_TABLE_BYTES = 16 * 1024 * 1024;
/** L1 indexes per batch at most, so that progress and cancellation come often on any disk. */
const BATCH_INDEXES = 4096;

interface MeasuredTable extends TableUsage {
  /** Reached by one L1 table only (refcount 1): its cluster and its own data are exclusive. */
  unshared: boolean;
}

export class MappingPass {
  private readonly image: Qcow2Image;
  private readonly states: MappedState[];
  private readonly options: MappingPassOptions;
  /** L2 table offset by L1 index, one array per state. */
  private readonly l2Offsets: Float64Array[];
  /** distances[a * count + b], symmetric. */
  private readonly distances: Float64Array;
  private readonly usages: StateUsage[];
  private readonly measured = new Map<number, MeasuredTable>();
  private readonly refcounts: RefcountLookup;
  /** The file's holes: data clusters there were never written and count as no one's bytes. */
  private readonly holes: HoleList | null;
  /** Made on the first compressed entry met. */
  private compressedClusters: CompressedClusters | null = null;

  constructor(image: Qcow2Image, states: MappedState[], options: MappingPassOptions) {
    this.image = image;
    this.states = states;
    this.options = options;
    this.l2Offsets = states.map((state) => {
      const offsets = new Float64Array(state.l1.size);
      for (let index = 0; index < state.l1.size; index++) offsets[index] = image.l2OffsetAt(state.l1, index);
      return offsets;
    });
    // count² numbers: only where asked (a disk near QEMU's 65,536 snapshots would need 34 GB).
    this.distances = new Float64Array(options.distances ? states.length * states.length : 0);
    this.usages = states.map((state) => ({ exclusiveBytes: state.ownsL1 ? Math.ceil((state.l1.size * 8) / image.clusterBytes) * image.clusterBytes : 0, sharedBytes: 0 }));
    this.refcounts = new RefcountLookup(image);
    this.holes = options.usage ? imageFileHoles(image) : null;
  }

  /** Guest clusters mapped differently by two states (by their index in the list given). */
  distance(a: number, b: number): number {
    return this.distances[a * this.states.length + b] ?? 0;
  }

  usage(state: number): StateUsage {
    const usage = this.usages[state];
    return usage === undefined ? { exclusiveBytes: 0, sharedBytes: 0 } : { ...usage };
  }

  /** Every L2 table some state names (once `run` is done, with usage on). */
  tableOffsets(): IterableIterator<number> {
    return this.measured.keys();
  }

  run(): this {
    const job = this.options.job ?? silentJob;
    const indexes = Math.max(0, ...this.l2Offsets.map((offsets) => offsets.length));
    let start = 0;
    while (start < indexes) {
      job.throwIfCancelled();
      job.progress('reading mapping tables', start, indexes, 'steps');
      start = this.batch(start, indexes);
    }
    job.progress('reading mapping tables', indexes, indexes, 'steps');
    if (this.compressedClusters !== null) {
      const { own, shared } = this.compressedClusters.totals(this.refcounts);
      this.usages.forEach((usage, state) => {
        usage.exclusiveBytes += own[state] ?? 0;
        usage.sharedBytes += shared[state] ?? 0;
      });
    }
    return this;
  }

  private tableAt(state: number, l1Index: number): number {
    return this.l2Offsets[state]?.[l1Index] ?? 0;
  }

  private differs(l1Index: number): boolean {
    const first = this.tableAt(0, l1Index);
    for (let state = 1; state < this.states.length; state++) if (this.tableAt(state, l1Index) !== first) return true;
    return false;
  }

  /** Reads and accounts L1 indexes [start, …) up to the budget; returns where the next batch starts. */
  private batch(start: number, indexes: number): number {
    const { usage, distances } = this.options;
    const tableBytes = this.image.clusterBytes;
    const compared: number[] = [];
    const keep = new Set<number>();
    const toRead = new Set<number>();
    let end = start;
    for (; end < indexes && end - start < BATCH_INDEXES; end++) {
      const contested = distances && this.differs(end);
      if (contested) {
        let added = 0;
        for (let state = 0; state < this.states.length; state++) {
          const offset = this.tableAt(state, end);
          if (offset !== 0 && !keep.has(offset)) added++;
        }
        if (end > start && (keep.size + added) * tableBytes > (this.options.batchTableBytes ?? BATCH_TABLE_BYTES)) break;
        compared.push(end);
        for (let state = 0; state < this.states.length; state++) {
          const offset = this.tableAt(state, end);
          if (offset !== 0) keep.add(offset);
        }
      }
      if (usage) {
        for (let state = 0; state < this.states.length; state++) {
          const offset = this.tableAt(state, end);
          if (offset !== 0 && !this.measured.has(offset)) toRead.add(offset);
        }
      }
    }
    const kept = new Map<number, Uint32Array>();
    for (const offset of keep) toRead.add(offset);
    this.image.l2Cache.scan(toRead, (offset, bytes) => {
      if (usage && !this.measured.has(offset)) this.measure(offset, bytes);
      if (keep.has(offset)) {
        const copy = new Uint32Array(bytes.byteLength >>> 2);
        new Uint8Array(copy.buffer).set(bytes);
        kept.set(offset, copy);
      }
    });
    if (usage) {
      for (let l1Index = start; l1Index < end; l1Index++) this.addUsage(l1Index);
      this.addCompressed(start, end);
    }
    for (const l1Index of compared) this.compare(l1Index, kept);
    return end;
  }

  private measure(offset: number, bytes: Uint8Array): void {
    const image = this.image;
    const marks = this.options.marks ?? null;
    const cluster = offset / image.clusterBytes;
    if (marks !== null && cluster < marks.length) marks[cluster] = (marks[cluster] ?? 0) | MARK_METADATA;
    const usage = measureTable(image, bytes, this.refcounts, marks, this.holes);
    this.measured.set(offset, { ...usage, unshared: this.refcounts.get(cluster) === 1 });
  }

  /**
   * The host clusters of compressed data the batch's tables touch, state by state (each host
   * cluster counted once per state): their tables' lists are dropped after, keeping memory bounded.
   */
  private addCompressed(start: number, end: number): void {
    for (let state = 0; state < this.states.length; state++) {
      for (let l1Index = start; l1Index < end; l1Index++) {
        const compressed = this.measured.get(this.tableAt(state, l1Index))?.compressed;
        if (compressed === null || compressed === undefined) continue;
        this.compressedClusters ??= new CompressedClusters(Math.ceil(this.image.file.size() / this.image.clusterBytes), this.states.length, this.image.clusterBytes);
        for (const [cluster, references] of compressed) this.compressedClusters.add(state, cluster, references);
      }
    }
    for (let state = 0; state < this.states.length; state++) {
      for (let l1Index = start; l1Index < end; l1Index++) {
        const table = this.measured.get(this.tableAt(state, l1Index));
        if (table !== undefined) table.compressed = null;
      }
    }
  }

  private addUsage(l1Index: number): void {
    for (let state = 0; state < this.states.length; state++) {
      const offset = this.tableAt(state, l1Index);
      if (offset === 0) continue;
      const table = this.measured.get(offset);
      const usage = this.usages[state];
      if (table === undefined || usage === undefined) continue;
      if (table.unshared) {
        usage.exclusiveBytes += this.image.clusterBytes + table.ownDataBytes;
        usage.sharedBytes += table.dataBytes - table.ownDataBytes;
      } else {
        usage.sharedBytes += table.dataBytes;
      }
    }
  }

  /** Adds one L1 index's differences to every pair of states whose tables there differ. */
  private compare(l1Index: number, kept: Map<number, Uint32Array>): void {
    const perTable = this.image.l2Entries;
    const slotLimit = Math.min(perTable, this.options.guestClusters - l1Index * perTable);
    if (slotLimit <= 0) return;
    const wordsPerEntry = this.image.l2EntryBytes / 4;
    const count = this.states.length;
    // States grouped by the table they name here: distinct tables are compared, once.
    const tables: number[] = [];
    const groupOf = new Int32Array(count);
    for (let state = 0; state < count; state++) {
      const offset = this.tableAt(state, l1Index);
      let group = tables.indexOf(offset);
      if (group < 0) group = tables.push(offset) - 1;
      groupOf[state] = group;
    }
    const groups = tables.length;
    const between = tableDistances(
      tables.map((offset) => (offset === 0 ? null : (kept.get(offset) ?? null))),
      slotLimit,
      wordsPerEntry,
    );
    for (let a = 0; a < count; a++) {
      const groupA = (groupOf[a] ?? 0) * groups;
      for (let b = a + 1; b < count; b++) {
        const clusters = between[groupA + (groupOf[b] ?? 0)] ?? 0;
        if (clusters === 0) continue;
        this.distances[a * count + b] = (this.distances[a * count + b] ?? 0) + clusters;
        this.distances[b * count + a] = (this.distances[b * count + a] ?? 0) + clusters;
      }
    }
  }
}
