/** A write split into 1 MiB pwrites lands whole, at its place, whatever its length and alignment. */
import * as fs from 'node:fs';
import { randomFillSync } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WRITE_PIECE_BYTES, writeInPieces } from '../../../src/shared/qcow2/io/write-pieces.ts';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('writeInPieces', () => {
  it('writes every byte of buffers shorter, equal to and longer than a piece, at odd positions, and nothing else', () => {
    const file = folder.file('pieces.bin');
    for (const [length, position] of [
      [0, 0],
      [1, 7],
      [WRITE_PIECE_BYTES, 0],
      [WRITE_PIECE_BYTES + 1, 4095],
      [3 * WRITE_PIECE_BYTES + 12_345, 2 * WRITE_PIECE_BYTES + 1],
    ] as const) {
      fs.writeFileSync(file, new Uint8Array(0));
      const bytes = randomFillSync(new Uint8Array(length));
      const fd = fs.openSync(file, 'r+');
      try {
        writeInPieces(fd, bytes, position);
      } finally {
        fs.closeSync(fd);
      }
      const written = new Uint8Array(fs.readFileSync(file));
      expect(written.length, `${length} bytes at ${position}`).toBe(length === 0 ? 0 : position + length);
      expect(written.subarray(0, position).every((byte) => byte === 0)).toBe(true);
      expect(Buffer.from(written.subarray(position)).equals(Buffer.from(bytes)), `${length} bytes at ${position}`).toBe(true);
    }
  });
});
