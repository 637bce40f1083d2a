/**
 * XPRESS with Huffman coding ([MS-XCA] "LZ77+Huffman"), one chunk at a time: what Windows' System
 * Compression (WOF, `compact /exe:xpress4k`, CompactOS) stores a file's 4, 8 or 16 KiB chunks in.
 *
 * A chunk: 256 bytes holding the code lengths of 512 symbols (two 4-bit lengths a byte, the even
 * symbol's in the low half), then a bit stream read as little-endian 16-bit words, most significant
 * bit first. Symbols 0-255 are literals; 256-511 a match: the low 4 bits a length (15: one more
 * byte follows, 255 there: a 16-bit length), the high 4 bits how many offset bits follow (the
 * offset's top bit is implied). The bytes of a long length sit in the input right after the
 * 16-bit words already taken into the bit buffer, which holds at most two: where they are depends
 * on exactly when words are taken, so this reader takes one only when fewer bits are left than
 * the next field needs (15 before a symbol, 16 before an offset), as Windows' decoder does.
 * Matches reach back only within the chunk. Hostile bytes give FILESYSTEM_CORRUPT.
 */
import { corrupt } from './bytes.ts';

const SYMBOLS = 512;
const MAX_CODE_LENGTH = 15;
/** Codes up to this long are found with one table look-up; longer ones through the canonical ranges. */
const TABLE_BITS = 10;
const MIN_MATCH = 3;

/** A canonical Huffman code: a direct table for short codes, and per length the first code and where its symbols start. */
interface HuffmanCode {
  /** (symbol << 4) | length for each TABLE_BITS-bit prefix of a short code; 0 where the prefix starts a longer code. */
  table: Uint16Array;
  /** Per length: the first code of that length, its number of codes and the index of its first symbol in `sorted`. */
  firstCode: Int32Array;
  count: Int32Array;
  firstIndex: Int32Array;
  sorted: Uint16Array;
}

/** The canonical code for `lengths` (codes in order of length, then symbol); over-subscribed or empty lengths are corrupt. */
function buildCode(lengths: Uint8Array, what: string): HuffmanCode {
  const count = new Int32Array(MAX_CODE_LENGTH + 1);
  for (const length of lengths) count[length] = (count[length] ?? 0) + 1;
  count[0] = 0;
  // Kraft: the codes must fit in the code space (an incomplete code is allowed; its gaps are corrupt when met).
  let space = 1;
  for (let length = 1; length <= MAX_CODE_LENGTH; length++) {
    space = space * 2 - (count[length] ?? 0);
    if (space < 0) throw corrupt(`${what}: its Huffman code lengths are over-subscribed`);
  }
  if (space === 2 ** MAX_CODE_LENGTH) throw corrupt(`${what}: its Huffman code has no symbols`);
  const firstCode = new Int32Array(MAX_CODE_LENGTH + 2);
  const firstIndex = new Int32Array(MAX_CODE_LENGTH + 2);
  let code = 0;
  let index = 0;
  for (let length = 1; length <= MAX_CODE_LENGTH; length++) {
    firstCode[length] = code;
    firstIndex[length] = index;
    code = (code + (count[length] ?? 0)) * 2;
    index += count[length] ?? 0;
  }
  const sorted = new Uint16Array(index);
  const next = firstIndex.slice();
  for (let length = 1; length <= MAX_CODE_LENGTH; length++) {
    for (let symbol = 0; symbol < SYMBOLS; symbol++) {
      if (lengths[symbol] !== length) continue;
      const at = next[length] ?? 0;
      sorted[at] = symbol;
      next[length] = at + 1;
    }
  }
  const table = new Uint16Array(1 << TABLE_BITS);
  for (let length = 1; length <= TABLE_BITS; length++) {
    const start = firstIndex[length] ?? 0;
    for (let position = 0; position < (count[length] ?? 0); position++) {
      const symbol = sorted[start + position] ?? 0;
      const prefix = ((firstCode[length] ?? 0) + position) << (TABLE_BITS - length);
      table.fill((symbol << 4) | length, prefix, prefix + (1 << (TABLE_BITS - length)));
    }
  }
  return { table, firstCode, count, firstIndex, sorted };
}

/** Decodes one chunk of `output.length` bytes from `input`; throws FILESYSTEM_CORRUPT on anything malformed. */
export function decompressXpressHuffman(input: Uint8Array, output: Uint8Array, what: string): void {
  if (input.length < SYMBOLS / 2) throw corrupt(`${what}: ${input.length} bytes, less than its code length table`);
  const lengths = new Uint8Array(SYMBOLS);
  for (let index = 0; index < SYMBOLS / 2; index++) {
    const byte = input[index] ?? 0;
    lengths[index * 2] = byte & 0x0f;
    lengths[index * 2 + 1] = byte >> 4;
  }
  const code = buildCode(lengths, what);
  let next = SYMBOLS / 2;
  // The bit buffer: `bits` bits, left-aligned in a 32-bit word. Past the input's end, zeros (as Windows reads it).
  let buffer = 0;
  let bits = 0;
  const ensure = (needed: number): void => {
    if (bits >= needed) return;
    if (next + 2 > input.length) {
      bits = 32;
      return;
    }
    buffer = (buffer | (((input[next] ?? 0) | ((input[next + 1] ?? 0) << 8)) << (16 - bits))) >>> 0;
    next += 2;
    bits += 16;
  };
  const peek = (count: number): number => (count === 0 ? 0 : buffer >>> (32 - count));
  const remove = (count: number): void => {
    buffer = (buffer << count) >>> 0;
    bits -= count;
  };
  const { table, firstCode, count, firstIndex, sorted } = code;
  let out = 0;
  while (out < output.length) {
    ensure(MAX_CODE_LENGTH);
    let symbol: number;
    const entry = table[peek(TABLE_BITS)] ?? 0;
    if (entry !== 0) {
      symbol = entry >> 4;
      remove(entry & 0x0f);
    } else {
      symbol = -1;
      for (let length = TABLE_BITS + 1; length <= MAX_CODE_LENGTH; length++) {
        const offset = peek(length) - (firstCode[length] ?? 0);
        if (offset >= 0 && offset < (count[length] ?? 0)) {
          symbol = sorted[(firstIndex[length] ?? 0) + offset] ?? 0;
          remove(length);
          break;
        }
      }
      if (symbol < 0) throw corrupt(`${what}: a code its Huffman table does not have, at output byte ${out}`);
    }
    if (symbol < 256) {
      output[out++] = symbol;
      continue;
    }
    let length = symbol & 0x0f;
    const offsetBits = (symbol >> 4) & 0x0f;
    ensure(16);
    const distance = ((1 << offsetBits) | peek(offsetBits)) >>> 0;
    remove(offsetBits);
    if (length === 0x0f) {
      length += next < input.length ? (input[next++] ?? 0) : 0;
      if (length === 0x0f + 0xff) {
        length = next + 2 <= input.length ? (input[next] ?? 0) | ((input[next + 1] ?? 0) << 8) : 0;
        next += 2;
      }
    }
    length += MIN_MATCH;
    if (distance > out) throw corrupt(`${what}: a match ${distance} bytes back at output byte ${out}`);
    if (length > output.length - out) throw corrupt(`${what}: a match of ${length} bytes runs past the chunk's ${output.length}`);
    const from = out - distance;
    // An overlapping match repeats what it has just written, byte by byte.
    if (distance >= length) output.copyWithin(out, from, from + length);
    else for (let index = 0; index < length; index++) output[out + index] = output[from + index] ?? 0;
    out += length;
  }
}
