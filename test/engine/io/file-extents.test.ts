import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { fileExtents, nextDataOffset, type FileExtent } from '../../../src/shared/qcow2/io/file-extents.ts';
import { RawImage } from '../../../src/shared/qcow2/image/raw-image.ts';
import { MemoryBlockFile } from '../../helpers/memory-block-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';

const MiB = 1024 * 1024;
/** Data at [0, 1 MiB) and [65 MiB, 65 MiB + 64 KiB); holes elsewhere up to 128 MiB. */
const WRITTEN: [number, number][] = [
  [0, MiB],
  [65 * MiB, 65 * MiB + 64 * 1024],
];
const SIZE = 128 * MiB;

let folder: TempDir;
let sparse = '';
let fd = -1;
beforeAll(() => {
  folder = tempDir();
  sparse = folder.file('sparse.raw');
  const file = fs.openSync(sparse, 'w');
  for (const [start, end] of WRITTEN) fs.writeSync(file, Buffer.alloc(end - start, 0xa5), 0, end - start, start);
  fs.ftruncateSync(file, SIZE);
  fs.closeSync(file);
  fd = fs.openSync(sparse, 'r');
});
afterAll(() => {
  fs.closeSync(fd);
  folder.cleanup();
});

/** Extents cover [start, end) exactly, in order, kinds alternating. */
function expectTiling(extents: FileExtent[], start: number, end: number): void {
  let position = start;
  extents.forEach((extent, index) => {
    expect(extent.start).toBe(position);
    expect(extent.length).toBeGreaterThan(0);
    if (index > 0) expect(extent.data).not.toBe(extents[index - 1]?.data);
    position += extent.length;
  });
  expect(position).toBe(end);
}

const kindAt = (extents: FileExtent[], offset: number): boolean | undefined => extents.find((extent) => offset >= extent.start && offset < extent.start + extent.length)?.data;

describe('file extents (SEEK_DATA / SEEK_HOLE)', () => {
  it('tile the file: every written byte in data, the long gaps in holes', () => {
    const extents = fileExtents(fd, 0, SIZE);
    expectTiling(extents, 0, SIZE);
    for (const [start, end] of WRITTEN) for (let offset = start; offset < end; offset += 4096) expect(kindAt(extents, offset)).toBe(true);
    // Well inside the gaps (a file system may allocate a little around what was written).
    for (const offset of [4 * MiB, 32 * MiB, 60 * MiB, 70 * MiB, 127 * MiB]) expect(kindAt(extents, offset)).toBe(false);
  });

  it('tile any part of the file asked for', () => {
    const extents = fileExtents(fd, MiB / 2, 66 * MiB);
    expectTiling(extents, MiB / 2, 66 * MiB);
    expect(extents[0]).toMatchObject({ start: MiB / 2, data: true });
    expect(kindAt(extents, 65 * MiB)).toBe(true);
    expect(fileExtents(fd, 10 * MiB, 20 * MiB)).toEqual([{ start: 10 * MiB, length: 10 * MiB, data: false }]);
  });

  it('find the next data past a hole, or the end when there is none', () => {
    const next = nextDataOffset(fd, 2 * MiB, SIZE);
    expect(next).toBeGreaterThan(2 * MiB);
    expect(next).toBeLessThanOrEqual(65 * MiB);
    expect(nextDataOffset(fd, 0, SIZE)).toBe(0);
    expect(nextDataOffset(fd, 80 * MiB, SIZE)).toBe(SIZE);
    expect(nextDataOffset(fd, 2 * MiB, 10 * MiB)).toBe(10 * MiB);
  });
});

describe("a raw image's extents", () => {
  it('past the end of the file is a hole; a file that cannot tell is all data', () => {
    const raw = new RawImage(NodeBlockFile.open(sparse, { readOnly: true }));
    try {
      const extents = raw.extents(120 * MiB, 130 * MiB);
      expect(extents).toEqual([{ start: 120 * MiB, length: 10 * MiB, data: false }]);
      expect(raw.nextData(70 * MiB, 200 * MiB)).toBe(200 * MiB);
      expect(raw.nextData(2 * MiB, 200 * MiB)).toBeGreaterThan(2 * MiB);
    } finally {
      raw.close();
    }
    const memory = new RawImage(new MemoryBlockFile('memory.raw', new Uint8Array(4 * MiB)));
    expect(memory.extents(0, 6 * MiB)).toEqual([
      { start: 0, length: 4 * MiB, data: true },
      { start: 4 * MiB, length: 2 * MiB, data: false },
    ]);
    expect(memory.nextData(MiB, 6 * MiB)).toBe(MiB);
  });
});
