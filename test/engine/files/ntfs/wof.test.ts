/**
 * System Compressed (WOF) files on hostile bytes: the XPRESS and LZX decoders and the chunk table give
 * FILESYSTEM_CORRUPT for anything malformed, never another error, a hang or a read outside the
 * volume. The well-formed cases (wimlib's chunks) are in ntfs-reader.test.ts; an LZX uncompressed
 * block (wimlib writes none) is made by hand here.
 */
import { gunzipSync } from 'node:zlib';
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { NTFS_READER } from '../../../../src/shared/qcow2/files/ntfs/ntfs-reader.ts';
import { decompressLzx } from '../../../../src/shared/qcow2/files/ntfs/lzx.ts';
import { decompressXpressHuffman } from '../../../../src/shared/qcow2/files/ntfs/xpress-huffman.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { SeededRandom } from '../../../helpers/seeded-random.ts';
import { NTFS_FIXTURE } from './ntfs-fixture.ts';

/** Numbers in [0, 1) from a seed. */
function random(seed: number): () => number {
  const seeded = new SeededRandom(seed);
  return () => seeded.next();
}

/** Runs `action`; a Qcow2Error FILESYSTEM_CORRUPT is an answer, anything else thrown fails the test. */
async function corruptOrFine(action: () => unknown, label: string): Promise<'ok' | 'corrupt'> {
  try {
    await action();
    return 'ok';
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'FILESYSTEM_CORRUPT') return 'corrupt';
    throw new Error(`${label}: ${String(error)}`, { cause: error });
  }
}

describe('the XPRESS Huffman decoder on hostile chunks', () => {
  it('refuses a chunk shorter than its code table, code lengths that over-subscribe the code, and a code with no symbols', () => {
    const output = new Uint8Array(4096);
    expect(() => decompressXpressHuffman(new Uint8Array(200), output, 'short')).toThrow(/less than its code length table/);
    expect(() => decompressXpressHuffman(new Uint8Array(300), output, 'empty')).toThrow(/has no symbols/);
    // Every symbol one bit long: 512 codes where two fit.
    expect(() => decompressXpressHuffman(new Uint8Array(300).fill(0x11), output, 'over')).toThrow(/over-subscribed/);
  });

  it('decodes a literal and an overlapping match, and refuses a match reaching before the chunk', () => {
    // Two symbols of one bit each: 'a' (0) and the match symbol 256 + 0 (length 0 + 3, no offset bits: distance 1) (1).
    const chunk = new Uint8Array(256 + 4);
    chunk[97 >> 1] = 0x10; // symbol 97 (odd): high nibble
    chunk[256 >> 1] = 0x01; // symbol 256 (even): low nibble
    // Bits: 0 (a), 1 (match of 3 at distance 1): "aaaa"; the word is little-endian, read from its top bit.
    chunk[256] = 0x00;
    chunk[257] = 0b0100_0000;
    const output = new Uint8Array(4);
    decompressXpressHuffman(chunk, output, 'tiny');
    expect(Buffer.from(output).toString('latin1')).toBe('aaaa');
    // The match first: nothing to copy from.
    chunk[257] = 0b1000_0000;
    expect(() => decompressXpressHuffman(chunk, new Uint8Array(3), 'early match')).toThrow(/bytes back/);
  });

  it('gives FILESYSTEM_CORRUPT or bytes, never another error, on 3,000 seeded random chunks', async () => {
    const next = random(2212);
    const outcomes = { ok: 0, corrupt: 0 };
    for (let trial = 0; trial < 3000; trial++) {
      const input = new Uint8Array(256 + Math.floor(next() * 3000));
      // Plausible code lengths (small nibbles) so that the bit stream is reached, not only the table check.
      for (let index = 0; index < input.length; index++) input[index] = index < 256 ? (Math.floor(next() * 10) * 0x11) & 0xff : Math.floor(next() * 256);
      outcomes[await corruptOrFine(() => decompressXpressHuffman(input, new Uint8Array(1 + Math.floor(next() * 16384)), `trial ${trial}`), `trial ${trial}`)]++;
    }
    expect(outcomes.ok + outcomes.corrupt).toBe(3000);
    expect(outcomes.corrupt).toBeGreaterThan(0);
  });
});

/** Bits written most significant first into little-endian 16-bit words, and whole bytes after them. */
class BitWriter {
  private readonly bytes: number[] = [];
  private word = 0;
  private count = 0;

  bits(value: number, width: number): this {
    for (let bit = width - 1; bit >= 0; bit--) {
      this.word = (this.word << 1) | ((value >>> bit) & 1);
      if (++this.count === 16) this.flushWord();
    }
    return this;
  }

  /** Pads the current word with zeros and appends `bytes` after it. */
  alignedBytes(bytes: number[]): this {
    if (this.count > 0) this.bits(0, 16 - this.count);
    this.bytes.push(...bytes);
    return this;
  }

  done(): Uint8Array {
    if (this.count > 0) this.bits(0, 16 - this.count);
    return new Uint8Array(this.bytes);
  }

  private flushWord(): void {
    this.bytes.push(this.word & 0xff, this.word >>> 8);
    this.word = 0;
    this.count = 0;
  }
}

const le32 = (value: number): number[] => [value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff];

describe('the LZX decoder on uncompressed blocks and hostile chunks', () => {
  it('reads uncompressed blocks (the stream realigned, the recent offsets, an odd size padded) and undoes the x86 call translation', () => {
    const first = [0x61, 0x62, 0xe8, ...le32(100), ...Buffer.from('cdefgh')];
    const second = [...Buffer.from(', world')];
    const recent = [...le32(1), ...le32(2), ...le32(3)];
    const chunk = new BitWriter()
      .bits(3, 3).bits(0, 1).bits(first.length, 16).alignedBytes([...recent, ...first, 0])
      .bits(3, 3).bits(0, 1).bits(second.length, 16).alignedBytes([...recent, ...second, 0])
      .done();
    const output = new Uint8Array(first.length + second.length);
    decompressLzx(chunk, output, 'hand-made');
    // The CALL at 2 held its absolute target 100: relative again, 98.
    expect([...output]).toEqual([0x61, 0x62, 0xe8, ...le32(98), ...Buffer.from('cdefgh'), ...second]);
    // A recent offset of 0 and a block past the chunk are refused.
    const zeroOffset = new BitWriter().bits(3, 3).bits(0, 1).bits(2, 16).alignedBytes([...le32(0), ...le32(1), ...le32(1), 1, 2]).done();
    expect(() => decompressLzx(zeroOffset, new Uint8Array(2), 'zero offset')).toThrow(/recent offset of 0/);
    const tooLong = new BitWriter().bits(3, 3).bits(0, 1).bits(5, 16).alignedBytes([...recent, 1, 2, 3, 4, 5]).done();
    expect(() => decompressLzx(tooLong, new Uint8Array(4), 'too long')).toThrow(/a block of 5 bytes where 4 are left/);
    expect(() => decompressLzx(new BitWriter().bits(5, 3).bits(0, 1).bits(2, 16).done(), new Uint8Array(4), 'type 5')).toThrow(/block type 5/);
  });

  it('gives FILESYSTEM_CORRUPT or bytes, never another error, on 2,000 seeded random chunks', async () => {
    const next = random(2214);
    const outcomes = { ok: 0, corrupt: 0 };
    for (let trial = 0; trial < 2000; trial++) {
      const input = new Uint8Array(4 + Math.floor(next() * 6000));
      for (let index = 0; index < input.length; index++) input[index] = Math.floor(next() * 256);
      // Half the trials start as a verbatim or aligned block, so that the code tables are reached.
      if (trial % 2 === 0) input[1] = (input[1]! & 0x1f) | ((1 + (trial % 4 === 0 ? 1 : 0)) << 5);
      outcomes[await corruptOrFine(() => decompressLzx(input, new Uint8Array(1 + Math.floor(next() * 32768)), `trial ${trial}`), `trial ${trial}`)]++;
    }
    expect(outcomes.corrupt).toBeGreaterThan(0);
  });
});

describe('a System Compressed file with a damaged chunk table or chunks', { timeout: 120_000 }, () => {
  it.each([['/wof/xpress4k.bin', 2213], ['/wof/lzx-x86.bin', 2215]])('%s reads as FILESYSTEM_CORRUPT or as bytes, never another error or a read outside the volume (300 seeded damages)', async (path, seed) => {
    const pristine = gunzipSync(fs.readFileSync(NTFS_FIXTURE));
    const reader = await NTFS_READER.open(memoryVolumeBytes(pristine));
    const extents = (await reader.extents!(path)) ?? [];
    const size = (await reader.stat(path)).size;
    await reader.close();
    // The stream's first cluster holds the chunk table and the first chunks; the rest, chunk data.
    const first = extents[0];
    expect(first).toBeDefined();
    const next = random(seed);
    const outcomes = { ok: 0, corrupt: 0 };
    // Each trial damages the volume in place and puts the bytes back after it: a fresh 32 MiB copy per trial took ~130 ms, most of the test.
    const bytes = Buffer.from(pristine);
    for (let trial = 0; trial < 300; trial++) {
      const extent = extents[Math.floor(next() * extents.length)] ?? first!;
      const damages = 1 + Math.floor(next() * 8);
      const damaged: number[] = [];
      for (let damage = 0; damage < damages; damage++) {
        // Table entries (the stream's first bytes) half the time; anywhere in the stream otherwise.
        const at = next() < 0.5 ? first!.offset + Math.floor(next() * 200) : extent.offset + Math.floor(next() * extent.length);
        bytes[at] = next() < 0.3 ? 0xff : Math.floor(next() * 256);
        damaged.push(at);
      }
      const filesystem = await NTFS_READER.open(memoryVolumeBytes(bytes));
      outcomes[
        await corruptOrFine(async () => {
          const buffer = new Uint8Array(65_536);
          for (let offset = 0; offset < size; offset += buffer.length) await filesystem.read(path, buffer, offset);
        }, `trial ${trial}`)
      ]++;
      await filesystem.close();
      for (const at of damaged) bytes[at] = pristine[at]!;
    }
    expect(bytes.equals(pristine), 'every damage was put back').toBe(true);
    expect(outcomes.corrupt).toBeGreaterThan(100);
  });
});
