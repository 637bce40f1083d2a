/**
 * XPRESS with Huffman coding ([MS-XCA] "LZ77+Huffman"), one chunk at a time: what Windows' System
 * Compression (WOF, `compact /exe:xpress4k`, CompactOS) stores a file's 4, 8 or 16 KiB chunks in.
 *
 * A chunk: 256 bytes holding the code lengths of 512 symbols (two 4-bit lengths a byte, the even
 * symbol's in the low half), then a bit stream read as little-endian 16-bit words, most significant
 * bit first. Symbols 0-255 are literals; 256-511 a match: the low 4 bits a length (15: one more
 * byte follows, 255 there: a 16-bit length), the high 4 bits how many offset bits follow (the
 * offset's top bit is implied). The bytes of a long length sit in the input right after the
 * 16-bit words already taken into the bit buffer (15 bits are made ready before a symbol, 16
 * before an offset).
 * Matches reach back only within the chunk. Hostile bytes give FILESYSTEM_CORRUPT. The bit stream
 * and the Huffman codes: ms-bitstream.ts.
 */
import { corrupt } from './bytes.ts';
import { huffmanCode, isEmptyCode, MsBitstream } from './ms-bitstream.ts';

const SYMBOLS = 512;
const MAX_CODE_LENGTH = 15;
const MIN_MATCH = 3;

/** Decodes one chunk of `output.length` bytes from `input`; throws FILESYSTEM_CORRUPT on anything malformed. */
export function decompressXpressHuffman(input: Uint8Array, output: Uint8Array, what: string): void {
  if (input.length < SYMBOLS / 2) throw corrupt(`${what}: ${input.length} bytes, less than its code length table`);
  const lengths = new Uint8Array(SYMBOLS);
  for (let index = 0; index < SYMBOLS / 2; index++) {
    const byte = input[index] ?? 0;
    lengths[index * 2] = byte & 0x0f;
    lengths[index * 2 + 1] = byte >> 4;
  }
  const code = huffmanCode(lengths, MAX_CODE_LENGTH, what);
  if (isEmptyCode(code)) throw corrupt(`${what}: its Huffman code has no symbols`);
  const stream = new MsBitstream(input, SYMBOLS / 2);
  let out = 0;
  while (out < output.length) {
    const symbol = stream.symbol(code, `${what} (output byte ${out})`);
    if (symbol < 256) {
      output[out++] = symbol;
      continue;
    }
    let length = symbol & 0x0f;
    const offsetBits = (symbol >> 4) & 0x0f;
    stream.ensure(16);
    const distance = ((1 << offsetBits) | stream.peek(offsetBits)) >>> 0;
    stream.remove(offsetBits);
    if (length === 0x0f) {
      length += stream.byte();
      if (length === 0x0f + 0xff) length = stream.u16();
    }
    length += MIN_MATCH;
    if (distance > out) throw corrupt(`${what}: a match ${distance} bytes back at output byte ${out}`);
    if (length > output.length - out) throw corrupt(`${what}: a match of ${length} bytes runs past the chunk's ${output.length}`);
    copyMatch(output, out, distance, length);
    out += length;
  }
}

/** Copies an LZ77 match of `length` bytes from `distance` back; an overlapping one repeats what it has just written. */
export function copyMatch(output: Uint8Array, out: number, distance: number, length: number): void {
  const from = out - distance;
  if (distance >= length) output.copyWithin(out, from, from + length);
  else for (let index = 0; index < length; index++) output[out + index] = output[from + index] ?? 0;
}
