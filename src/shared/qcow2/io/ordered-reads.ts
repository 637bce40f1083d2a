/**
 * Reading many one-cluster tables (L2 tables, refcount blocks) in file order, neighbours together:
 * one read covers a run of tables that lie close to each other (the small gaps between them are
 * read and dropped), so a walk over thousands of tables costs a few large reads instead of one
 * system call per table. The run buffer is reused, which bounds the memory whatever the count.
 */
import type { BlockFile } from './block-file.ts';

export interface OrderedReadOptions {
  /** Neighbours this close (bytes between one table's end and the next's start) share a read. */
  maxGapBytes?: number;
  /** The largest single read (and the buffer it reuses). */
  maxRunBytes?: number;
}

/** Gaps this small cost less to read than another system call (about what the page cache copies in one). */
const DEFAULT_GAP_BYTES = 16 * 1024;
const DEFAULT_RUN_BYTES = 4 * 1024 * 1024;

/**
 * Calls `visit` for each table at `offsets` (ascending, each once) with its bytes and how many of
 * them the file holds (`tableBytes` unless the file ends inside or before the table; the rest is
 * zeros). The bytes are only valid during the call: copy what must outlive it.
 */
export function readTablesInFileOrder(
  file: BlockFile,
  offsets: ArrayLike<number>,
  tableBytes: number,
  visit: (offset: number, bytes: Uint8Array, bytesInFile: number) => void,
  options: OrderedReadOptions = {},
): void {
  const reader = new OrderedTableReader(file, offsets, tableBytes, options);
  for (let index = 0; index < offsets.length; index++) {
    const offset = offsets[index] ?? 0;
    const bytes = reader.read(offset);
    visit(offset, bytes, reader.bytesInFile);
  }
}

/**
 * The tables at `offsets` (ascending), read ahead in runs of neighbours as the caller asks for
 * them in that order; a table asked for out of order is read alone. What `read` returns is valid
 * until the next call.
 */
export class OrderedTableReader {
  private readonly file: BlockFile;
  private readonly offsets: ArrayLike<number>;
  private readonly tableBytes: number;
  private readonly maxGap: number;
  private readonly maxRun: number;
  private buffer: Uint8Array;
  private runStart = 0;
  private runLength = 0;
  private runCount = 0;
  /** Index in `offsets` of the first table not yet in a run. */
  private next = 0;
  /** How many bytes of the last table read the file holds (the rest reads as zeros). */
  bytesInFile = 0;

  constructor(file: BlockFile, offsets: ArrayLike<number>, tableBytes: number, options: OrderedReadOptions = {}) {
    this.file = file;
    this.offsets = offsets;
    this.tableBytes = tableBytes;
    this.maxGap = options.maxGapBytes ?? DEFAULT_GAP_BYTES;
    this.maxRun = Math.max(tableBytes, options.maxRunBytes ?? DEFAULT_RUN_BYTES);
    this.buffer = new Uint8Array(tableBytes);
  }

  read(offset: number): Uint8Array {
    const position = offset - this.runStart;
    if (this.runLength > 0 && position >= 0 && position + this.tableBytes <= this.runLength) return this.slice(position);
    if (this.next < this.offsets.length && this.offsets[this.next] === offset) this.readRun();
    else this.readAlone(offset);
    return this.slice(offset - this.runStart);
  }

  private slice(position: number): Uint8Array {
    this.bytesInFile = Math.max(0, Math.min(this.tableBytes, this.runCount - position));
    return this.buffer.subarray(position, position + this.tableBytes);
  }

  /** Reads the run of neighbours that starts with offsets[next]. */
  private readRun(): void {
    const start = this.offsets[this.next] ?? 0;
    let last = this.next;
    while (last + 1 < this.offsets.length) {
      const following = this.offsets[last + 1] ?? 0;
      const end = (this.offsets[last] ?? 0) + this.tableBytes;
      if (following < end || following - end > this.maxGap || following + this.tableBytes - start > this.maxRun) break;
      last++;
    }
    this.next = last + 1;
    this.fill(start, (this.offsets[last] ?? 0) + this.tableBytes - start);
  }

  private readAlone(offset: number): void {
    this.fill(offset, this.tableBytes);
  }

  private fill(start: number, length: number): void {
    if (this.buffer.length < length) this.buffer = new Uint8Array(Math.min(this.maxRun, Math.max(length, 2 * this.buffer.length)));
    const run = this.buffer.subarray(0, length);
    const count = this.file.read(run, start);
    run.fill(0, Math.max(0, count));
    this.runStart = start;
    this.runLength = length;
    this.runCount = Math.max(0, count);
  }
}

/** Offsets sorted ascending without repeats, in a compact array. */
export function sortedUnique(offsets: Iterable<number>): Float64Array {
  const sorted = Float64Array.from(offsets).sort();
  let kept = 0;
  for (let index = 0; index < sorted.length; index++) {
    const offset = sorted[index] ?? 0;
    if (kept === 0 || offset !== sorted[kept - 1]) sorted[kept++] = offset;
  }
  return sorted.subarray(0, kept);
}
