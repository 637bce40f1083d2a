/**
 * What Windows' XPRESS Huffman and LZX formats share ([MS-XCA], [MS-PATCH]): canonical Huffman
 * codes given by their code lengths, and a bit stream of little-endian 16-bit words read from each
 * word's top bit, with whole bytes (XPRESS's long lengths, LZX's uncompressed blocks) taken from the
 * input right after the words already in the bit buffer. Where such a byte lies depends on when
 * words are taken, so this reader takes one exactly when fewer bits are left than the next field
 * needs (at most 16), as Windows' decoders do. Past the input's end the stream reads as zeros; the
 * callers' output bounds end the decoding.
 */
import { corrupt } from './bytes.ts';

/** Codes up to this long are found with one table look-up; longer ones through the canonical ranges. */
const TABLE_BITS = 10;

/** A canonical Huffman code: codes in order of length, then symbol. */
export interface HuffmanCode {
  /** (symbol << 5) | length for each TABLE_BITS-bit prefix of a short code; 0 where the prefix starts a longer code (or none). */
  table: Uint32Array;
  maxLength: number;
  /** Per length: its first code, how many codes it has, and the index of its first symbol in `sorted`. */
  firstCode: Int32Array;
  count: Int32Array;
  firstIndex: Int32Array;
  sorted: Uint16Array;
}

/**
 * The code for `lengths` (0: the symbol is not used). Lengths that over-subscribe the code space
 * are corrupt; an incomplete code (or an empty one: LZX sends one where a block has no long match)
 * is built, and a code it lacks is corrupt when met (symbol()).
 */
export function huffmanCode(lengths: Uint8Array, maxLength: number, what: string): HuffmanCode {
  const count = new Int32Array(maxLength + 1);
  for (const length of lengths) {
    if (length > maxLength) throw corrupt(`${what}: a Huffman code length of ${length} (at most ${maxLength})`);
    count[length] = (count[length] ?? 0) + 1;
  }
  count[0] = 0;
  let space = 1;
  for (let length = 1; length <= maxLength; length++) {
    space = space * 2 - (count[length] ?? 0);
    if (space < 0) throw corrupt(`${what}: its Huffman code lengths are over-subscribed`);
  }
  const firstCode = new Int32Array(maxLength + 1);
  const firstIndex = new Int32Array(maxLength + 1);
  let code = 0;
  let index = 0;
  for (let length = 1; length <= maxLength; length++) {
    firstCode[length] = code;
    firstIndex[length] = index;
    code = (code + (count[length] ?? 0)) * 2;
    index += count[length] ?? 0;
  }
  const sorted = new Uint16Array(index);
  const next = firstIndex.slice();
  for (let symbol = 0; symbol < lengths.length; symbol++) {
    const length = lengths[symbol] ?? 0;
    if (length === 0) continue;
    const at = next[length] ?? 0;
    sorted[at] = symbol;
    next[length] = at + 1;
  }
  const table = new Uint32Array(1 << TABLE_BITS);
  for (let length = 1; length <= Math.min(TABLE_BITS, maxLength); length++) {
    const start = firstIndex[length] ?? 0;
    for (let position = 0; position < (count[length] ?? 0); position++) {
      const prefix = ((firstCode[length] ?? 0) + position) << (TABLE_BITS - length);
      table.fill((((sorted[start + position] ?? 0) << 5) | length) >>> 0, prefix, prefix + (1 << (TABLE_BITS - length)));
    }
  }
  return { table, maxLength, firstCode, count, firstIndex, sorted };
}

/** Whether any symbol has a code (LZX's e8 rule asks it of one symbol; XPRESS refuses an empty code). */
export function isEmptyCode(code: HuffmanCode): boolean {
  return code.sorted.length === 0;
}

export class MsBitstream {
  private readonly input: Uint8Array;
  /** The next input byte not yet taken (into the bit buffer, or as a whole byte). */
  private next: number;
  /** `bits` bits, left-aligned in a 32-bit word. */
  private buffer = 0;
  private bits = 0;

  constructor(input: Uint8Array, start: number) {
    this.input = input;
    this.next = start;
  }

  /** Takes one more word when fewer than `needed` (at most 16) bits are left. */
  ensure(needed: number): void {
    if (this.bits >= needed) return;
    if (this.next + 2 > this.input.length) {
      this.bits = 32;
      return;
    }
    this.buffer = (this.buffer | (((this.input[this.next] ?? 0) | ((this.input[this.next + 1] ?? 0) << 8)) << (16 - this.bits))) >>> 0;
    this.next += 2;
    this.bits += 16;
  }

  /** The next `count` bits (the buffer must hold them: ensure first). */
  peek(count: number): number {
    return count === 0 ? 0 : this.buffer >>> (32 - count);
  }

  remove(count: number): void {
    this.buffer = (this.buffer << count) >>> 0;
    this.bits -= count;
  }

  /** The next `count` (at most 16) bits, taken. */
  read(count: number): number {
    this.ensure(count);
    const value = this.peek(count);
    this.remove(count);
    return value;
  }

  /** One whole byte after the buffered words (0 past the end). */
  byte(): number {
    return this.next < this.input.length ? (this.input[this.next++] ?? 0) : 0;
  }

  /** A little-endian 16-bit value after the buffered words (0 where fewer bytes are left). */
  u16(): number {
    if (this.next + 2 > this.input.length) return 0;
    const value = (this.input[this.next] ?? 0) | ((this.input[this.next + 1] ?? 0) << 8);
    this.next += 2;
    return value;
  }

  u32(): number {
    if (this.next + 4 > this.input.length) return 0;
    const value = ((this.input[this.next] ?? 0) | ((this.input[this.next + 1] ?? 0) << 8) | ((this.input[this.next + 2] ?? 0) << 16) | ((this.input[this.next + 3] ?? 0) << 24)) >>> 0;
    this.next += 4;
    return value;
  }

  /** `target.length` whole bytes after the buffered words; false where fewer are left. */
  bytes(target: Uint8Array): boolean {
    if (this.next + target.length > this.input.length) return false;
    target.set(this.input.subarray(this.next, this.next + target.length));
    this.next += target.length;
    return true;
  }

  /** Drops the buffered bits: the stream goes on at the next whole word. */
  align(): void {
    this.buffer = 0;
    this.bits = 0;
  }

  /** The next symbol of `code`. */
  symbol(code: HuffmanCode, what: string): number {
    this.ensure(code.maxLength);
    const entry = code.table[this.peek(TABLE_BITS)] ?? 0;
    if (entry !== 0) {
      this.remove(entry & 0x1f);
      return entry >>> 5;
    }
    for (let length = TABLE_BITS + 1; length <= code.maxLength; length++) {
      const offset = this.peek(length) - (code.firstCode[length] ?? 0);
      if (offset >= 0 && offset < (code.count[length] ?? 0)) {
        this.remove(length);
        return code.sorted[(code.firstIndex[length] ?? 0) + offset] ?? 0;
      }
    }
    throw corrupt(`${what}: a code its Huffman table does not have`);
  }
}
