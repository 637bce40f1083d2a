/** A rewrite's source read with its holes known at open: every byte as the file reads, holes without a read. */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { holeAwareSource, knownHoles, withinHole } from '../../../src/shared/qcow2/io/hole-aware-file.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const MiB = 1024 * 1024;
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('a source file whose holes are known at open', () => {
  it('reads every range as the file does — in holes, across their edges, in data, past the end', () => {
    const path = folder.file('sparse.bin');
    const random = new SeededRandom(7);
    const data: [number, Uint8Array][] = [
      [0, random.bytes(64 * 1024)],
      [3 * MiB + 4096, random.bytes(200 * 1024)],
      [9 * MiB, random.bytes(MiB)],
    ];
    const fd = fs.openSync(path, 'w');
    for (const [offset, bytes] of data) fs.writeSync(fd, bytes, 0, bytes.length, offset);
    fs.ftruncateSync(fd, 16 * MiB);
    fs.closeSync(fd);
    const expected = fs.readFileSync(path);

    const file = holeAwareSource(NodeBlockFile.open(path, { readOnly: true }));
    try {
      const holes = knownHoles(file);
      // The file systems the tests run on tell holes (tmpfs, ext4, xfs, btrfs, overlayfs); file-extents.test.ts relies on it too.
      expect(holes).not.toBeNull();
      if (holes === null) return;
      expect(withinHole(holes, 5 * MiB, 6 * MiB)).toBe(true);
      expect(withinHole(holes, 9 * MiB - 4096, 9 * MiB + 4096)).toBe(false);
      for (let round = 0; round < 400; round++) {
        const start = Math.floor(random.next() * 17 * MiB);
        const length = 1 + Math.floor(random.next() * 2 * MiB);
        const buffer = new Uint8Array(length).fill(0xee);
        const count = file.read(buffer, start);
        const want = expected.subarray(Math.min(start, expected.length), Math.min(start + length, expected.length));
        expect(count, `count at ${start}+${length}`).toBe(want.length);
        expect(Buffer.from(buffer.subarray(0, count)).equals(want), `bytes at ${start}+${length}`).toBe(true);
      }
    } finally {
      file.close();
    }
  });

  it('is the file itself where it is open for writing', () => {
    const path = folder.file('writable.bin');
    fs.writeFileSync(path, Buffer.alloc(0));
    fs.truncateSync(path, 4 * MiB);
    const writable = NodeBlockFile.open(path);
    try {
      expect(holeAwareSource(writable)).toBe(writable);
    } finally {
      writable.close();
    }
  });
});
