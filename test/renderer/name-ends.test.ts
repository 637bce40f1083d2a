import { describe, expect, it } from 'vitest';
import { NAME_TAIL_CHARS, nameEnds } from '../../src/renderer/src/lib/name-ends.ts';

describe('nameEnds', () => {
  it('leaves a short name whole', () => {
    expect(nameEnds('notes.txt')).toEqual({ head: 'notes.txt', tail: '' });
  });

  it('splits a long name so that its last characters are the tail', () => {
    const ends = nameEnds('a-file-with-a-rather-long-name-number-12.txt');
    expect(ends.tail).toBe('ber-12.txt');
    expect(ends.head + ends.tail).toBe('a-file-with-a-rather-long-name-number-12.txt');
  });

  it('never splits a surrogate pair or a character from its combining mark', () => {
    const emoji = `holiday-photos-${'😀'.repeat(NAME_TAIL_CHARS)}`;
    expect(nameEnds(emoji).tail).toBe('😀'.repeat(NAME_TAIL_CHARS));
    // The cut would fall between "e" and its accent (U+0301): the "e" goes with it.
    const marked = `${'x'.repeat(10)}e\u0301${'y'.repeat(NAME_TAIL_CHARS - 1)}`;
    expect(nameEnds(marked)).toEqual({ head: 'x'.repeat(10), tail: `e\u0301${'y'.repeat(NAME_TAIL_CHARS - 1)}` });
  });
});
