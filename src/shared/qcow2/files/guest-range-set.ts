/**
 * The guest ranges that differ between two states (from the mapping tables), sorted and merged once
 * so that "does this file's extent touch them?" is a binary search, not a scan: files-diff asks it
 * for every file whose size and modification time stayed the same.
 */
import type { ByteRange } from './filesystem.ts';

export class GuestRangeSet {
  /** Starts and ends of disjoint ranges, in guest order. */
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(ranges: readonly ByteRange[]) {
    const sorted = ranges.filter((range) => range.length > 0).sort((a, b) => a.offset - b.offset);
    for (const range of sorted) {
      const end = range.offset + range.length;
      const last = this.ends.length - 1;
      if (last >= 0 && range.offset <= this.ends[last]!) this.ends[last] = Math.max(this.ends[last]!, end);
      else {
        this.starts.push(range.offset);
        this.ends.push(end);
      }
    }
  }

  get isEmpty(): boolean {
    return this.starts.length === 0;
  }

  /** Whether any byte of [offset, offset + length) lies in the set. */
  intersects(offset: number, length: number): boolean {
    if (length <= 0) return false;
    // The first range ending after offset: it intersects when it starts before the end of the query.
    let low = 0;
    let high = this.ends.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.ends[middle]! <= offset) low = middle + 1;
      else high = middle;
    }
    return low < this.starts.length && this.starts[low]! < offset + length;
  }

  intersectsAny(ranges: readonly ByteRange[]): boolean {
    return ranges.some((range) => this.intersects(range.offset, range.length));
  }
}
