/** Names the app draws: what would draw as something else (bytes that are not UTF-8, invisible reordering characters) is spelled out. */
import { describe, expect, it } from 'vitest';
import { shownName } from '../../src/renderer/src/lib/shown-name.ts';

describe('shownName', () => {
  it('leaves ordinary names alone, right-to-left scripts and emoji joiners included', () => {
    for (const name of ['before upgrade', 'שלום', 'مرحبا', '👨\u200d👩\u200d👧', 'caf\uFFFD', 'می\u200cخواهم']) expect(shownName(name)).toBe(name);
  });

  it('spells out what draws as another name ("\\u202Epeek" drew as "keep") and bytes that are not UTF-8 (drawn as "�" like a real U+FFFD)', () => {
    expect(shownName('\u202epeek')).toBe('\\u202epeek');
    expect(shownName('kee\u200bp')).toBe('kee\\u200bp');
    expect(shownName('caf\udce9')).toBe('caf\\xe9');
    expect(shownName('\u2066x\u2069\ufeff')).toBe('\\u2066x\\u2069\\ufeff');
    // A character past U+FFFF whose low half lies in U+DC80–U+DCFF is a character.
    expect(shownName('\ud800\udc80')).toBe('\ud800\udc80');
  });

  it('doubles a backslash that starts what reads as an escape, so that a name spelling "\\x0a" or "\\u202e" is not taken for the byte or the character (CLI audit)', () => {
    expect(shownName('lat\\xe9n')).toBe('lat\\\\xe9n');
    expect(shownName('lat\udce9n')).toBe('lat\\xe9n');
    expect(shownName('evil\\u202eman')).toBe('evil\\\\u202eman');
    expect(shownName('C:\\backup')).toBe('C:\\backup');
  });
});
