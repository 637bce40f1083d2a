/**
 * TableCache.scan, the walk over many tables: file order whatever order they are given in, each
 * once, a cached table as the cache holds it (a dirty one is newer than the file), the others
 * read in runs without entering the cache, and a table past the end of the file is CORRUPT; and
 * TableCache.peek, the same for one table at a time, read into the caller's buffer.
 */
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { TableCache } from '../../../src/shared/qcow2/image/table-cache.ts';
import { MemoryBlockFile } from '../../helpers/memory-block-file.ts';
import { ObservedFile } from '../../helpers/observed-file.ts';

const TABLE = 4096;

function fileOf(tables: number): ObservedFile {
  const content = new Uint8Array(tables * TABLE);
  for (let index = 0; index < tables; index++) content.fill(index + 1, index * TABLE, (index + 1) * TABLE);
  return new ObservedFile(new MemoryBlockFile('tables', content), { sync: false, record: true });
}

function scanAll(cache: TableCache, offsets: number[]): [number, number][] {
  const visits: [number, number][] = [];
  cache.scan(offsets, (offset, bytes) => visits.push([offset, bytes[TABLE - 1] ?? -1]));
  return visits;
}

describe('TableCache.scan', () => {
  it('visits each table once in file order, neighbours read together, and leaves the cache as it was', () => {
    const file = fileOf(8);
    const cache = new TableCache(file, TABLE, 64 * TABLE, 'L2 table');
    const visits = scanAll(cache, [5 * TABLE, 0, 2 * TABLE, TABLE, 5 * TABLE, 3 * TABLE]);
    expect(visits).toEqual([
      [0, 1],
      [TABLE, 2],
      [2 * TABLE, 3],
      [3 * TABLE, 4],
      [5 * TABLE, 6],
    ]);
    expect(file.reads).toEqual([{ position: 0, length: 6 * TABLE }]);
    // Nothing entered the cache: a get reads the file again.
    cache.get(TABLE);
    expect(file.reads).toHaveLength(2);
  });

  it('gives a dirty cached table as the cache holds it, not as the file has it, in its place in file order', () => {
    const file = fileOf(4);
    const cache = new TableCache(file, TABLE, 64 * TABLE, 'L2 table');
    cache.create(2 * TABLE, new Uint8Array(TABLE).fill(0xee));
    const visits = scanAll(cache, [3 * TABLE, 2 * TABLE, TABLE]);
    expect(visits).toEqual([
      [TABLE, 2],
      [2 * TABLE, 0xee],
      [3 * TABLE, 4],
    ]);
    expect(file.reads.map((read) => read.position)).toEqual([TABLE, 3 * TABLE]);
  });

  it('refuses a table that lies past the end of the file', () => {
    const cache = new TableCache(fileOf(2), TABLE, 64 * TABLE, 'L2 table');
    let error: unknown;
    try {
      scanAll(cache, [TABLE, 4 * TABLE]);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('CORRUPT');
    expect((error as Qcow2Error).message).toContain('L2 table at 0x4000 lies past the end of the file');
  });
});

describe('TableCache.peek', () => {
  it('reads a table the cache does not hold into the given buffer, and leaves the cache as it was', () => {
    const file = fileOf(4);
    const cache = new TableCache(file, TABLE, 64 * TABLE, 'L2 table');
    const scratch = new Uint8Array(TABLE);
    const first = cache.peek(2 * TABLE, scratch);
    expect(first).toBe(scratch);
    expect(first[0]).toBe(3);
    expect(cache.peek(3 * TABLE, scratch)[TABLE - 1]).toBe(4);
    expect(file.reads.map((read) => read.position)).toEqual([2 * TABLE, 3 * TABLE]);
    // Nothing entered the cache: a get reads the file again.
    cache.get(2 * TABLE);
    expect(file.reads).toHaveLength(3);
  });

  it('gives a cached table as the cache holds it (a dirty one is newer than the file), without reading or touching the buffer', () => {
    const file = fileOf(4);
    const cache = new TableCache(file, TABLE, 64 * TABLE, 'L2 table');
    cache.create(TABLE, new Uint8Array(TABLE).fill(0xee));
    cache.get(3 * TABLE);
    const reads = file.reads.length;
    const scratch = new Uint8Array(TABLE).fill(0x55);
    expect(cache.peek(TABLE, scratch)[0]).toBe(0xee);
    expect(cache.peek(3 * TABLE, scratch)[0]).toBe(4);
    expect(file.reads).toHaveLength(reads);
    expect(scratch.every((byte) => byte === 0x55)).toBe(true);
  });

  it('refuses a table past the end of the file, and a buffer that is not one table long', () => {
    const cache = new TableCache(fileOf(2), TABLE, 64 * TABLE, 'L2 table');
    let error: unknown;
    try {
      cache.peek(4 * TABLE, new Uint8Array(TABLE));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('CORRUPT');
    expect((error as Qcow2Error).message).toContain('L2 table at 0x4000 lies past the end of the file');
    expect(() => cache.peek(0, new Uint8Array(TABLE / 2))).toThrow('not a table');
  });
});
