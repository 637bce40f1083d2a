/** Linux names as text: ASCII as it is at any length, UTF-8 decoded, other bytes as \xNN, a backslash spelled \\. */
import { describe, expect, it } from 'vitest';
import { guestFileName } from '../../../src/shared/qcow2/files/linux-names.ts';

const bytesOf = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('guestFileName', () => {
  it('reads an ASCII name as it is, short or past 1,024 bytes (a damaged entry may claim that much)', () => {
    expect(guestFileName(bytesOf('notes.txt'))).toBe('notes.txt');
    expect(guestFileName(new Uint8Array(0))).toBe('');
    const long = 'a'.repeat(5000) + 'z';
    expect(guestFileName(bytesOf(long))).toBe(long);
    // A piece of a larger buffer (a folder block): only its own bytes.
    const block = bytesOf('xxhello.txtyy');
    expect(guestFileName(block.subarray(2, 11))).toBe('hello.txt');
  });

  it('decodes UTF-8, shows other bytes as \\xNN and spells a backslash \\\\', () => {
    expect(guestFileName(bytesOf('Grüße ✓'))).toBe('Grüße ✓');
    expect(guestFileName(Uint8Array.of(0x63, 0x61, 0x66, 0xe9))).toBe('caf\\xe9');
    expect(guestFileName(bytesOf('a\\b'))).toBe('a\\\\b');
    expect(guestFileName(Uint8Array.of(0x5c, 0x78, 0x66, 0x66))).toBe('\\\\xff');
  });
});
