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
const DEFAULT_GAP_BYTES = 64 * 1024;
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
  const maxGap = options.maxGapBytes ?? DEFAULT_GAP_BYTES;
  const maxRun = Math.max(tableBytes, options.maxRunBytes ?? DEFAULT_RUN_BYTES);
  let buffer: Uint8Array | null = null;
  let first = 0;
  while (first < offsets.length) {
    const start = offsets[first] ?? 0;
    let last = first;
    while (last + 1 < offsets.length) {
      const next = offsets[last + 1] ?? 0;
      const end = (offsets[last] ?? 0) + tableBytes;
      if (next < end || next - end > maxGap || next + tableBytes - start > maxRun) break;
      last++;
    }
    const length = (offsets[last] ?? 0) + tableBytes - start;
    buffer ??= new Uint8Array(Math.min(maxRun, Math.max(length, tableBytes)));
    if (buffer.length < length) buffer = new Uint8Array(length);
    const run = buffer.subarray(0, length);
    const count = file.read(run, start);
    run.fill(0, Math.max(0, count));
    for (let index = first; index <= last; index++) {
      const offset = offsets[index] ?? 0;
      const position = offset - start;
      visit(offset, run.subarray(position, position + tableBytes), Math.max(0, Math.min(tableBytes, count - position)));
    }
    first = last + 1;
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
