/** LZNT1 on hostile bytes: every malformed chunk is FILESYSTEM_CORRUPT, nothing reads or writes outside its unit. */
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { decompressLznt1 } from '../../../../src/shared/qcow2/files/ntfs/lznt1.ts';
import { SeededRandom } from '../../../helpers/seeded-random.ts';

/** A compressed chunk holding `body` (flag bytes and tokens), with its header. */
function chunk(body: number[]): Uint8Array {
  const header = 0xb000 | (body.length + 2 - 3);
  return new Uint8Array([header & 0xff, header >> 8, ...body]);
}

function corruptMessage(input: Uint8Array): string {
  try {
    decompressLznt1(input, new Uint8Array(65536), 'test unit');
  } catch (error) {
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('FILESYSTEM_CORRUPT');
    return (error as Qcow2Error).message;
  }
  throw new Error('decompressed without complaint');
}

describe('LZNT1 decompression', () => {
  it('expands literals and an overlapping back-reference (a run) within a chunk, then zeros', () => {
    // Flags 0b0010: literal "a", then a reference one byte back for 3 + 5 bytes.
    const output = new Uint8Array(8192).fill(0xee);
    decompressLznt1(chunk([0b10, 0x61, 0x05, 0x00]), output, 'test unit');
    expect(Buffer.from(output.subarray(0, 10)).toString('latin1')).toBe('aaaaaaaaa\0');
    expect(output.subarray(9).every((byte) => byte === 0)).toBe(true);
  });

  it('refuses a back-reference before the chunk starts, one past its 4096 bytes, and a chunk past the unit', () => {
    expect(corruptMessage(chunk([0b1, 0x00, 0x10]))).toMatch(/before its chunk/);
    expect(corruptMessage(chunk([0b10, 0x61, 0xff, 0x0f]))).toMatch(/past its chunk/);
    expect(corruptMessage(new Uint8Array([0xff, 0xbf, 1, 2, 3]))).toMatch(/past its compression unit/);
  });

  it('returns or throws FILESYSTEM_CORRUPT on random bytes, never writing past the unit', () => {
    const random = new SeededRandom(22);
    for (let round = 0; round < 2000; round++) {
      const input = random.bytes(1 + random.int(0, 9000));
      if (round % 2 === 0) {
        // A plausible header, so the tokens get decoded.
        input[0] = random.int(0, 256);
        input[1] = 0xb0 | random.int(0, 16);
      }
      const output = new Uint8Array(16384);
      try {
        expect(decompressLznt1(input, output, 'random unit')).toBeLessThanOrEqual(output.length);
      } catch (error) {
        expect((error as Qcow2Error).code).toBe('FILESYSTEM_CORRUPT');
      }
    }
  });
});
