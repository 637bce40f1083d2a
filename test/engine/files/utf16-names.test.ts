import { describe, expect, it } from 'vitest';
import { longNameText } from '../../../src/shared/qcow2/files/fat/fat-names.ts';
import { LeBytes } from '../../../src/shared/qcow2/files/ntfs/bytes.ts';
import { utf16Name } from '../../../src/shared/qcow2/files/paths.ts';

describe('UTF-16 names (NTFS, FAT long names) with unpaired surrogates', () => {
  it('spells each unpaired surrogate \\uXXXX, so names that differ only there stay different; pairs stay characters', () => {
    expect(utf16Name([0x71, 0xdc00, 0x7a, 0x7a])).toBe('q\\uDC00zz');
    expect(utf16Name([0x71, 0xdc01, 0x7a, 0x7a])).toBe('q\\uDC01zz');
    expect(utf16Name([0xd83d, 0xde00, 0x61])).toBe('😀a');
    expect(utf16Name([0xd83d, 0x61, 0xde00])).toBe('\\uD83Da\\uDE00');
    expect(utf16Name([0xd800])).toBe('\\uD800');
    // A backslash itself is spelled \\: the characters \uDC00 are not the surrogate.
    expect(utf16Name([0x71, 0x5c, 0x75, 0x44, 0x43, 0x30, 0x30])).toBe('q\\\\uDC00');
    expect(utf16Name([0x71, 0xdc00])).toBe('q\\uDC00');
  });

  it('an NTFS file name and a FAT long name are read so', () => {
    const bytes = new Uint8Array([0x71, 0x00, 0x00, 0xdc, 0x7a, 0x00]);
    expect(new LeBytes(bytes, 'a name').fileName(0, 3)).toBe('q\\uDC00z');
    expect(longNameText(new Uint16Array([0x71, 0xdc01, 0x7a, 0, 0xffff]))).toBe('q\\uDC01z');
  });
});
