/**
 * LZX as Windows' System Compression (`compact /c /exe:lzx`) and WIM files use it, one 32 KiB chunk
 * at a time ([MS-PATCH]'s LZX with a 32 KiB window, a 16-bit block size, and the x86 call
 * translation always on with the file size fixed at 12,000,000).
 *
 * A chunk is blocks, each: a 3-bit type (1 verbatim, 2 aligned offset, 3 uncompressed), a size
 * (one bit set: 32,768; else 16 bits), then for compressed blocks the codes (an aligned block's
 * 8-symbol aligned offset code in 3-bit lengths; the main code in two parts, literals then
 * matches, and the length code, each as deltas from the previous lengths through a 20-symbol
 * pre-code), then symbols until the block's size is reached. A main symbol past 255 is a match:
 * its low 3 bits a length header (7: the length code adds to it), the rest an offset slot; slots
 * 0-2 repeat one of the three most recent offsets, the others give a base and extra bits (in an
 * aligned block the low 3 of those through the aligned code). An uncompressed block starts at a
 * whole word with the three recent offsets, then its bytes (padded to an even count). Last, x86
 * CALL targets (E8 xx xx xx xx) the compressor made absolute are made relative again.
 * Hostile bytes give FILESYSTEM_CORRUPT.
 */
import { corrupt } from './bytes.ts';
import { huffmanCode, isEmptyCode, MsBitstream, type HuffmanCode } from './ms-bitstream.ts';
import { copyMatch } from './xpress-huffman.ts';

const NUM_CHARS = 256;
const MIN_MATCH = 2;
const NUM_PRIMARY_LENGTHS = 7;
const NUM_LENGTH_HEADERS = NUM_PRIMARY_LENGTHS + 1;
const OFFSET_SLOTS = 30;
const MAIN_SYMBOLS = NUM_CHARS + OFFSET_SLOTS * NUM_LENGTH_HEADERS;
const LENGTH_SYMBOLS = 256 - NUM_PRIMARY_LENGTHS;
const PRECODE_SYMBOLS = 20;
const ALIGNED_SYMBOLS = 8;
const ALIGNED_BITS = 3;
const MAX_MAIN_LENGTH = 16;
const DEFAULT_BLOCK_BYTES = 32768;
/** A run of lengths may pass the end of what it fills by this much (Windows' and wimlib's decoders allow it). */
const LENGTHS_OVERRUN = 50;
const E8_FILE_SIZE = 12_000_000;

const BLOCK_VERBATIM = 1;
const BLOCK_ALIGNED = 2;
const BLOCK_UNCOMPRESSED = 3;

/** Extra offset bits per slot (0 for slots 0-3, then 1, 1, 2, 2, … 13, 13) and each slot's first offset. */
const EXTRA_BITS = Array.from({ length: OFFSET_SLOTS }, (_, slot) => (slot < 4 ? 0 : (slot >> 1) - 1));
const SLOT_BASE = EXTRA_BITS.reduce<number[]>((bases, extra, slot) => [...bases, (bases[slot] ?? 0) + 2 ** extra], [0]);

/** Decodes one chunk of `output.length` bytes (at most 32 KiB) from `input`. */
export function decompressLzx(input: Uint8Array, output: Uint8Array, what: string): void {
  const stream = new MsBitstream(input, 0);
  // Lengths start at zero for the first block's deltas, and carry over to the next block's.
  const mainLengths = new Uint8Array(MAIN_SYMBOLS + LENGTHS_OVERRUN);
  const lengthLengths = new Uint8Array(LENGTH_SYMBOLS + LENGTHS_OVERRUN);
  const recent = [1, 1, 1];
  let translated = false;
  let out = 0;
  while (out < output.length) {
    const blockWhat = `${what} (block at output byte ${out})`;
    stream.ensure(4);
    const type = stream.read(3);
    const size = stream.read(1) === 1 ? DEFAULT_BLOCK_BYTES : (stream.read(8) << 8) | stream.read(8);
    if (size < 1 || size > output.length - out) throw corrupt(`${blockWhat}: a block of ${size} bytes where ${output.length - out} are left`);
    if (type === BLOCK_UNCOMPRESSED) {
      // A stream already at a whole word skips one.
      stream.ensure(1);
      stream.align();
      for (let index = 0; index < 3; index++) recent[index] = stream.u32();
      if (recent.includes(0)) throw corrupt(`${blockWhat}: a recent offset of 0`);
      if (!stream.bytes(output.subarray(out, out + size))) throw corrupt(`${blockWhat}: an uncompressed block past the chunk's end`);
      if (size % 2 === 1) stream.byte();
      out += size;
      translated = true;
      continue;
    }
    if (type !== BLOCK_VERBATIM && type !== BLOCK_ALIGNED) throw corrupt(`${blockWhat}: block type ${type}`);
    let aligned: HuffmanCode | null = null;
    if (type === BLOCK_ALIGNED) {
      const lengths = new Uint8Array(ALIGNED_SYMBOLS);
      for (let index = 0; index < ALIGNED_SYMBOLS; index++) lengths[index] = stream.read(3);
      aligned = huffmanCode(lengths, 7, `${blockWhat} aligned offset code`);
    }
    readLengths(stream, mainLengths, 0, NUM_CHARS, blockWhat);
    readLengths(stream, mainLengths, NUM_CHARS, MAIN_SYMBOLS, blockWhat);
    const main = huffmanCode(mainLengths.subarray(0, MAIN_SYMBOLS), MAX_MAIN_LENGTH, `${blockWhat} main code`);
    readLengths(stream, lengthLengths, 0, LENGTH_SYMBOLS, blockWhat);
    const lengthCode = huffmanCode(lengthLengths.subarray(0, LENGTH_SYMBOLS), MAX_MAIN_LENGTH, `${blockWhat} length code`);
    if (isEmptyCode(main)) throw corrupt(`${blockWhat}: its main code has no symbols`);
    if ((mainLengths[0xe8] ?? 0) !== 0) translated = true;
    out = decodeBlock(stream, output, out, out + size, { main, lengthCode, aligned }, recent, blockWhat);
  }
  if (translated) undoCallTranslation(output);
}

/**
 * Code lengths [from, to) of `lengths` as deltas from their previous values, through a pre-code
 * read first: 0-16 a delta (mod 17), 17 and 18 runs of zeros, 19 a run of one delta.
 */
function readLengths(stream: MsBitstream, lengths: Uint8Array, from: number, to: number, what: string): void {
  const precodeLengths = new Uint8Array(PRECODE_SYMBOLS);
  for (let index = 0; index < PRECODE_SYMBOLS; index++) precodeLengths[index] = stream.read(4);
  const precode = huffmanCode(precodeLengths, 15, `${what} pre-code`);
  const delta = (at: number, symbol: number): number => ((lengths[at] ?? 0) - symbol + 17) % 17;
  // A run may pass `to` (into the next part's previous lengths, or the spare entries): as Windows' decoder.
  let at = from;
  while (at < to) {
    const symbol = stream.symbol(precode, `${what} pre-code`);
    if (symbol < 17) {
      lengths[at] = delta(at, symbol);
      at++;
    } else if (symbol === 19) {
      const run = 4 + stream.read(1);
      const repeated = stream.symbol(precode, `${what} pre-code`);
      if (repeated > 17) throw corrupt(`${what}: a repeated length given by pre-code symbol ${repeated}`);
      // One length, from the first one's previous value, for the whole run.
      lengths.fill(delta(at, repeated), at, at + run);
      at += run;
    } else {
      const run = symbol === 17 ? 4 + stream.read(4) : 20 + stream.read(5);
      lengths.fill(0, at, at + run);
      at += run;
    }
  }
  if (at > lengths.length) throw corrupt(`${what}: a run of code lengths past the table`);
}

interface BlockCodes {
  main: HuffmanCode;
  lengthCode: HuffmanCode;
  aligned: HuffmanCode | null;
}

function decodeBlock(stream: MsBitstream, output: Uint8Array, start: number, end: number, codes: BlockCodes, recent: number[], what: string): number {
  let out = start;
  while (out < end) {
    const symbol = stream.symbol(codes.main, what);
    if (symbol < NUM_CHARS) {
      output[out++] = symbol;
      continue;
    }
    const header = (symbol - NUM_CHARS) % NUM_LENGTH_HEADERS;
    const slot = Math.floor((symbol - NUM_CHARS) / NUM_LENGTH_HEADERS);
    const length = (header === NUM_PRIMARY_LENGTHS ? header + stream.symbol(codes.lengthCode, what) : header) + MIN_MATCH;
    let distance: number;
    if (slot < 3) {
      // A repeat: the offset used moves to the front (R2 used does not push R1 down).
      distance = recent[slot] ?? 1;
      recent[slot] = recent[0] ?? 1;
      recent[0] = distance;
    } else {
      const extra = EXTRA_BITS[slot] ?? 0;
      let offset = SLOT_BASE[slot] ?? 0;
      if (codes.aligned !== null && extra >= ALIGNED_BITS) {
        offset += stream.read(extra - ALIGNED_BITS) << ALIGNED_BITS;
        offset += stream.symbol(codes.aligned, what);
      } else offset += stream.read(extra);
      distance = offset - 2;
      recent[2] = recent[1] ?? 1;
      recent[1] = recent[0] ?? 1;
      recent[0] = distance;
    }
    if (length > end - out) throw corrupt(`${what}: a match of ${length} bytes runs past its block`);
    if (distance < 1 || distance > out) throw corrupt(`${what}: a match ${distance} bytes back at output byte ${out}`);
    copyMatch(output, out, distance, length);
    out += length;
  }
  return out;
}

/** Makes relative again the x86 CALL targets the compressor made absolute (positions count from the chunk's start). */
function undoCallTranslation(data: Uint8Array): void {
  if (data.length <= 10) return;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let position = 0; position < data.length - 10; position++) {
    if (data[position] !== 0xe8) continue;
    const absolute = view.getInt32(position + 1, true);
    if (absolute >= 0 ? absolute < E8_FILE_SIZE : absolute >= -position) {
      view.setInt32(position + 1, absolute >= 0 ? absolute - position : absolute + E8_FILE_SIZE, true);
    }
    position += 4;
  }
}
