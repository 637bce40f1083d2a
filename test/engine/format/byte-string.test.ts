/**
 * Names in an image decoded without loss (format/byte-string.ts): any bytes come back as they
 * were, valid UTF-8 reads as its text, and only bytes outside valid sequences become the escape
 * surrogates U+DC80–U+DCFF.
 */
import { describe, expect, it } from 'vitest';
import { decodeByteString, encodeByteString, holdsEscapedBytes } from '../../../src/shared/qcow2/format/byte-string.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const bytes = (...values: number[]): Uint8Array => Uint8Array.from(values);

describe('byte strings', () => {
  it('any bytes round-trip exactly (random runs, biased to the bytes UTF-8 is made of)', () => {
    const random = new SeededRandom(42);
    for (let round = 0; round < 3000; round++) {
      const length = random.int(0, 24);
      const input = Uint8Array.from({ length }, () => (random.int(0, 3) === 0 ? random.int(0, 0x7f) : random.int(0x80, 0xff)));
      expect(encodeByteString(decodeByteString(input)), `${Buffer.from(input).toString('hex')}`).toEqual(input);
    }
  });

  it('valid UTF-8 reads as its text, a leading BOM kept, and holds no escapes', () => {
    for (const text of ['café', 'snap 1', '\ufeffbom first', 'emoji 😀 and 𐂀', 'ÿ', '']) {
      const encoded = new TextEncoder().encode(text);
      expect(decodeByteString(encoded)).toBe(text);
      expect(holdsEscapedBytes(decodeByteString(encoded))).toBe(false);
      expect(encodeByteString(text)).toEqual(encoded);
    }
  });

  it('escapes each byte outside a valid sequence, and only those', () => {
    expect(decodeByteString(bytes(0x63, 0x61, 0x66, 0xe9))).toBe('caf\udce9');
    // A sequence cut short, an overlong NUL, a surrogate encoded in UTF-8, a code point past U+10FFFF.
    expect(decodeByteString(bytes(0xe2, 0x82))).toBe('\udce2\udc82');
    expect(decodeByteString(bytes(0xc0, 0x80))).toBe('\udcc0\udc80');
    expect(decodeByteString(bytes(0xed, 0xa0, 0x80))).toBe('\udced\udca0\udc80');
    expect(decodeByteString(bytes(0xf4, 0x90, 0x80, 0x80))).toBe('\udcf4\udc90\udc80\udc80');
    // Valid text on both sides of a bad byte stays text.
    expect(decodeByteString(bytes(0xc3, 0xa9, 0xff, 0xe2, 0x82, 0xac))).toBe('é\udcff€');
  });

  it('a pair of surrogates (a character past U+FFFF) is a character, not an escape', () => {
    const text = '\ud800\udc80'; // U+10080: its low half lies in the escape range
    expect(holdsEscapedBytes(text)).toBe(false);
    expect(encodeByteString(text)).toEqual(new TextEncoder().encode(text));
    expect(encodeByteString(`x\udc80${text}`)).toEqual(bytes(0x78, 0x80, 0xf0, 0x90, 0x82, 0x80));
  });
});
