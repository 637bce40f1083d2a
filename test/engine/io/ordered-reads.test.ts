/**
 * Reading many one-cluster tables in file order: neighbours share one read (small gaps read and
 * dropped), far tables and runs past the size limit do not, the bytes are each table's own, and a
 * table the file ends inside reads as zeros past the end with the count of bytes the file holds.
 */
import { describe, expect, it } from 'vitest';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { OrderedTableReader, readTablesInFileOrder, sortedUnique } from '../../../src/shared/qcow2/io/ordered-reads.ts';
import { MemoryBlockFile } from '../../helpers/memory-block-file.ts';
import { ObservedFile } from '../../helpers/observed-file.ts';

const TABLE = 512;

/** A file whose every byte tells its position (position / 512, low byte), read through a recorder. */
function numberedFile(bytes: number): ObservedFile {
  const content = new Uint8Array(bytes);
  for (let position = 0; position < bytes; position++) content[position] = Math.floor(position / TABLE) & 0xff;
  return new ObservedFile(new MemoryBlockFile('numbered', content) as BlockFile, { sync: false, record: true });
}

function visitAll(file: ObservedFile, offsets: number[], options: { maxGapBytes?: number; maxRunBytes?: number } = {}): Map<number, { first: number; last: number; inFile: number }> {
  const seen = new Map<number, { first: number; last: number; inFile: number }>();
  readTablesInFileOrder(file, offsets, TABLE, (offset, bytes, inFile) => seen.set(offset, { first: bytes[0] ?? -1, last: bytes[TABLE - 1] ?? -1, inFile }), options);
  return seen;
}

describe('readTablesInFileOrder', () => {
  it('reads neighbours within the gap limit in one read, and starts a new read past it', () => {
    const file = numberedFile(64 * TABLE);
    const offsets = [0, TABLE, 3 * TABLE, 20 * TABLE, 21 * TABLE];
    const seen = visitAll(file, offsets, { maxGapBytes: 2 * TABLE });
    expect(file.reads).toEqual([
      { position: 0, length: 4 * TABLE },
      { position: 20 * TABLE, length: 2 * TABLE },
    ]);
    // Each table gets its own bytes, not its neighbour's or the gap's.
    for (const offset of offsets) expect(seen.get(offset)).toEqual({ first: offset / TABLE, last: offset / TABLE, inFile: TABLE });
  });

  it('splits a run that would exceed the largest read', () => {
    const file = numberedFile(16 * TABLE);
    const offsets = Array.from({ length: 8 }, (_, index) => index * TABLE);
    visitAll(file, offsets, { maxRunBytes: 3 * TABLE });
    expect(file.reads.map((read) => read.length)).toEqual([3 * TABLE, 3 * TABLE, 2 * TABLE]);
    expect(file.reads.map((read) => read.position)).toEqual([0, 3 * TABLE, 6 * TABLE]);
  });

  it('zero-fills a table the file ends inside, and says how many of its bytes the file holds', () => {
    const file = numberedFile(4 * TABLE + 100);
    const seen = visitAll(file, [3 * TABLE, 4 * TABLE, 6 * TABLE]);
    expect(seen.get(3 * TABLE)).toEqual({ first: 3, last: 3, inFile: TABLE });
    expect(seen.get(4 * TABLE)).toEqual({ first: 4, last: 0, inFile: 100 });
    expect(seen.get(6 * TABLE)).toEqual({ first: 0, last: 0, inFile: 0 });
  });
});

describe('OrderedTableReader', () => {
  it('serves tables asked for in the listed order from its runs, and one asked for out of order by a read of its own', () => {
    const file = numberedFile(32 * TABLE);
    const reader = new OrderedTableReader(file, [2 * TABLE, 3 * TABLE, 10 * TABLE], TABLE, { maxGapBytes: 0 });
    expect(reader.read(2 * TABLE)[0]).toBe(2);
    expect(reader.read(3 * TABLE)[0]).toBe(3);
    expect(file.reads).toEqual([{ position: 2 * TABLE, length: 2 * TABLE }]);
    expect(reader.read(20 * TABLE)[0]).toBe(20);
    expect(reader.read(10 * TABLE)[0]).toBe(10);
    expect(file.reads.slice(1)).toEqual([
      { position: 20 * TABLE, length: TABLE },
      { position: 10 * TABLE, length: TABLE },
    ]);
  });
});

describe('sortedUnique', () => {
  it('sorts numerically (offsets past 2^32 too) and drops repeats', () => {
    expect([...sortedUnique([2 ** 40, 512, 2 ** 33, 512, 0, 2 ** 40])]).toEqual([0, 512, 2 ** 33, 2 ** 40]);
  });
});
