/**
 * A compressed btrfs extent's bytes: zlib (one stream), zstd (one frame) or LZO (btrfs's own
 * framing: a total length, then segments of LZO1X data, each at most a sector once decompressed,
 * whose 4-byte headers never straddle a sector). The output is never larger than the extent says.
 */
import { zlibModule, zstdFrameLength, type ZstdZlib } from '../../codec/compression.ts';
import { Qcow2Error } from '../../errors.ts';
import { corrupt, uint32, unsupported } from './btrfs-bytes.ts';

const ZLIB = 1;
const LZO = 2;
const ZSTD = 3;

/** `outputBytes` bytes of a compressed extent (FILESYSTEM_CORRUPT when they cannot be had). */
export function decompressExtent(compression: number, input: Uint8Array, outputBytes: number, sectorBytes: number): Uint8Array {
  let output: Uint8Array;
  try {
    if (compression === ZLIB) output = zlibModule().inflateSync(input, { maxOutputLength: Math.max(1, outputBytes) });
    else if (compression === ZSTD) {
      const zstd = zlibModule() as unknown as ZstdZlib;
      if (!zstd.zstdDecompressSync) throw unsupported('zstd compression, which needs Node.js 22.15 or later');
      output = zstd.zstdDecompressSync(input.subarray(0, zstdFrameLength(input)), { maxOutputLength: Math.max(1, outputBytes) });
    } else if (compression === LZO) output = decompressLzoExtent(input, outputBytes, sectorBytes);
    else throw unsupported(`compression kind ${compression}`);
  } catch (error) {
    if (error instanceof Qcow2Error && (error.code === 'FILESYSTEM_UNSUPPORTED' || error.code === 'FILESYSTEM_CORRUPT')) throw error;
    throw corrupt(`a compressed extent cannot be decompressed (${error instanceof Error ? error.message : String(error)})`);
  }
  // A short extent reads as zeros past its end, as the kernel leaves the rest of its page.
  if (output.length >= outputBytes) return output.subarray(0, outputBytes);
  const whole = new Uint8Array(outputBytes);
  whole.set(output);
  return whole;
}

function decompressLzoExtent(input: Uint8Array, outputBytes: number, sectorBytes: number): Uint8Array {
  if (input.length < 4) throw corrupt('an LZO extent shorter than its header');
  const total = uint32(input, 0);
  if (total > input.length || total < 4) throw corrupt(`an LZO extent of ${total} bytes in ${input.length}`);
  const output = new Uint8Array(outputBytes);
  let written = 0;
  let at = 4;
  while (at < total && written < outputBytes) {
    const sectorLeft = sectorBytes - (at % sectorBytes);
    if (sectorLeft < 4) {
      at += sectorLeft;
      continue;
    }
    if (at + 4 > total) throw corrupt('an LZO segment header past the extent');
    const length = uint32(input, at);
    at += 4;
    if (length === 0 || at + length > total) throw corrupt(`an LZO segment of ${length} bytes`);
    written += lzo1xDecompress(input.subarray(at, at + length), output.subarray(written, Math.min(outputBytes, written + sectorBytes)));
    at += length;
  }
  return output.subarray(0, written);
}

/**
 * LZO1X: literal runs and matches (M1–M4) as the format defines them; every read of the input and
 * every write of the output checked against its bounds. Returns the bytes written into `output`.
 */
export function lzo1xDecompress(input: Uint8Array, output: Uint8Array): number {
  let ip = 0;
  let op = 0;
  const byte = (): number => {
    if (ip >= input.length) throw corrupt('an LZO segment ends early');
    return input[ip++] as number;
  };
  /** A run length's extension: each zero byte adds 255, then the first non-zero byte. */
  const extended = (base: number): number => {
    let count = 0;
    let next = byte();
    while (next === 0) {
      count += 255;
      if (count > output.length + 255) throw corrupt('an LZO run longer than its output');
      next = byte();
    }
    return base + count + next;
  };
  const literals = (count: number): void => {
    if (ip + count > input.length) throw corrupt('LZO literals past the segment');
    if (op + count > output.length) throw corrupt('LZO output past its sector');
    output.set(input.subarray(ip, ip + count), op);
    ip += count;
    op += count;
  };
  const copyMatch = (distance: number, length: number): void => {
    if (distance < 1 || distance > op) throw corrupt('an LZO match before the output');
    if (op + length > output.length) throw corrupt('LZO output past its sector');
    for (let index = 0; index < length; index++, op++) output[op] = output[op - distance] as number;
  };

  /** 0: after a match with no trailing literals; 1–3: after that many; 4: after a literal run. */
  let state = 0;
  let t = byte();
  if (t > 17) {
    t -= 17;
    literals(t);
    state = t < 4 ? t : 4;
    t = byte();
  }
  for (;;) {
    let next: number;
    if (t < 16) {
      if (state === 0) {
        literals(t === 0 ? extended(15) + 3 : t + 3);
        state = 4;
        t = byte();
        continue;
      }
      next = t & 3;
      if (state !== 4) copyMatch(1 + (t >> 2) + (byte() << 2), 2);
      else copyMatch(1 + 0x800 + (t >> 2) + (byte() << 2), 3);
    } else if (t >= 64) {
      next = t & 3;
      copyMatch(1 + ((t >> 2) & 7) + (byte() << 3), (t >> 5) + 1);
    } else if (t >= 32) {
      const length = (t & 31) === 0 ? extended(31) + 2 : (t & 31) + 2;
      const low = byte();
      const word = low | (byte() << 8);
      next = word & 3;
      copyMatch(1 + (word >> 2), length);
    } else {
      const length = (t & 7) === 0 ? extended(7) + 2 : (t & 7) + 2;
      const low = byte();
      const word = low | (byte() << 8);
      next = word & 3;
      const distance = ((t & 8) << 11) + (word >> 2);
      if (distance === 0) {
        // The end marker (a match at distance 16 KiB less 16 KiB): the segment must end here.
        if (ip !== input.length) throw corrupt('an LZO segment goes on past its end marker');
        return op;
      }
      copyMatch(distance + 0x4000, length);
    }
    literals(next);
    state = next;
    t = byte();
  }
}
