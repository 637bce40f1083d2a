/** CRC-32C as ext4, XFS and btrfs use it: the standard check value, and a range of a buffer as its copy. */
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../../src/shared/qcow2/files/crc32c.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

describe('crc32c', () => {
  it('gives the Castagnoli check value for "123456789" (seeded with ~0, inverted at the end)', () => {
    expect((crc32c(new TextEncoder().encode('123456789')) ^ 0xffffffff) >>> 0).toBe(0xe3069283);
  });

  it('over a range of a buffer equals it over that range copied out, at every alignment and length', () => {
    const random = new SeededRandom(32);
    const bytes = random.bytes(300);
    for (let start = 0; start < 20; start++) {
      for (const length of [0, 1, 7, 8, 9, 15, 16, 17, 100, 279]) {
        const seed = random.int(0, 2 ** 32 - 1);
        expect(crc32c(bytes, seed, start, start + length)).toBe(crc32c(bytes.slice(start, start + length), seed));
      }
    }
    // An end past the buffer stops at its end.
    expect(crc32c(bytes, 5, 290, 400)).toBe(crc32c(bytes.slice(290), 5));
  });
});
