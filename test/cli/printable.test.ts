/** Guest names reach the terminal escaped: no escape sequence or line break from a hostile disk acts on it. */
import { describe, expect, it } from 'vitest';
import { describeFilesDiff } from '../../src/cli/commands/files-diff.ts';
import { describeEntries } from '../../src/cli/commands/ls.ts';
import { printable, printableListed, printableMessage, terminalSafe } from '../../src/cli/printable.ts';
import { isHiddenCodePoint } from '../../src/shared/hidden-characters.ts';

describe('printable', () => {
  it('shows C0 controls, DEL and C1 controls as \\xHH; leaves the rest (UTF-8 names, backslashes) as they are', () => {
    expect(printable('a\u001b]0;owned\u0007b')).toBe('a\\x1b]0;owned\\x07b');
    expect(printable('two\nrows\t\u007f\u009b')).toBe('two\\x0arows\\x09\\x7f\\x9b');
    expect(printable('Grüße ✓ C:\\path')).toBe('Grüße ✓ C:\\path');
    // A name spelling an escape is not the name holding what it escapes (CLI audit): its backslash is doubled.
    expect(printable('new\nline')).toBe('new\\x0aline');
    expect(printable('new\\x0aline')).toBe('new\\\\x0aline');
    expect(printable('evil\\u202eman')).toBe('evil\\\\u202eman');
    expect(printable('a\\\\b')).toBe('a\\\\\\b');
  });

  it('a byte of a name that is not UTF-8 (a lone U+DC80–U+DCFF from the engine) shows as \\xHH; a character past U+FFFF stays whole', () => {
    expect(printable('caf\udce9')).toBe('caf\\xe9');
    expect(printable('\ud800\udc80 \udcff')).toBe('\ud800\udc80 \\xff');
    expect(printableMessage('No snapshot "caf\udce9"\n')).toBe('No snapshot "caf\\xe9"\n');
  });

  it('shows the characters that reorder or hide text as \\uXXXX, so two names never look alike ("\\u202Epeek" looked like "keep")', () => {
    expect(printable('\u202epeek')).toBe('\\u202epeek');
    expect(printable('kee\u200bp')).toBe('kee\\u200bp');
    expect(printable('a\u2066b\u2069\ufeff\u200f')).toBe('a\\u2066b\\u2069\\ufeff\\u200f');
    // Joiners that scripts and emoji sequences need stay.
    expect(printable('👨\u200d👩 می\u200cخواهم')).toBe('👨\u200d👩 می\u200cخواهم');
  });

  it('every default-ignorable code point, bidi control and line/paragraph separator is spelled out (but the joiners and emoji selectors); a tag past U+FFFF as its pair', () => {
    const property = /[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\u2028\u2029]/u;
    const kept = new Set([0x200c, 0x200d, 0xfe0e, 0xfe0f]);
    const wrong: string[] = [];
    for (let cp = 0; cp <= 0x10ffff; cp++) {
      if (cp >= 0xd800 && cp <= 0xdfff) continue;
      if ((property.test(String.fromCodePoint(cp)) && !kept.has(cp)) !== isHiddenCodePoint(cp)) wrong.push(cp.toString(16));
    }
    expect(wrong).toEqual([]);
    expect(printable('soft\u00adhyphen \u3164 tag\u{e0020}')).toBe('soft\\u00adhyphen \\u3164 tag\\udb40\\udc20');
    expect(printable('❤\ufe0f')).toBe('❤\ufe0f');
    const json = JSON.stringify({ name: 'a\u{e0020}\u2028b' });
    expect(JSON.parse(terminalSafe(json, new Set(['\n'])))).toEqual({ name: 'a\u{e0020}\u2028b' });
    expect(terminalSafe(json, new Set(['\n']))).toBe('{"name":"a\\udb40\\udc20\\u2028b"}');
  });

  it('a message keeps its own line breaks and tabs, not its escapes', () => {
    expect(printableMessage('line one\n\tline two \u001b[2J')).toBe('line one\n\tline two \\x1b[2J');
  });

  it('files-diff text: a name with a line break is one row', () => {
    const text = describeFilesDiff({
      from: 'a',
      to: 'current',
      bytes: 1,
      skipped: [],
      differences: [{ change: 'added', volume: '', path: '/x\n+ /fake', kind: 'file', sizeAfter: 1 }],
    } as unknown as Parameters<typeof describeFilesDiff>[0]);
    expect(text.split('\n')[0]).toBe('+ /x\\x0a+ /fake  1 B');
  });

  it('a listed guest name keeps the listing\'s spelling: its backslash (already \\\\) is not doubled again, its controls are escaped', () => {
    // systemd's dev-disk-by\x2duuid-1234.swap, as the files engine lists it (files/paths.ts).
    const listed = 'dev-disk-by\\\\x2duuid-1234.swap';
    expect(printableListed(listed)).toBe(listed);
    expect(printableListed('tab\there \u202e \\\\u202e')).toBe('tab\\x09here \\u202e \\\\u202e');
    const entry = { name: listed, path: `/systemd/${listed}`, kind: 'symlink', size: 9, mtimeMs: null, target: '/dev/null' };
    expect(describeEntries([entry] as unknown as Parameters<typeof describeEntries>[0]).split('\n')[1]).toMatch(/^link +9 B +- +dev-disk-by\\\\x2duuid-1234\.swap -> \/dev\/null$/);
    const diff = describeFilesDiff({
      from: 'a',
      to: 'current',
      bytes: 1,
      skipped: [],
      differences: [{ change: 'added', volume: '', path: `/systemd/${listed}`, kind: 'file', sizeAfter: 1 }],
    } as unknown as Parameters<typeof describeFilesDiff>[0]);
    expect(diff.split('\n')[0]).toBe(`+ /systemd/${listed}  1 B`);
  });
});

describe('terminalSafe (everything a command prints)', () => {
  it('escapes C0 controls as \\xHH and DEL/C1 as \\u00HH, keeping the layout asked for; JSON with them stays JSON', () => {
    expect(terminalSafe('a\u001b[2J\tb\nc\rd\u009b', new Set(['\n', '\t']))).toBe('a\\x1b[2J\tb\nc\\x0dd\\u009b');
    expect(terminalSafe('50%\r', new Set(['\n', '\t', '\r']))).toBe('50%\r');
    expect(terminalSafe('1  caf\udce9  😀\n', new Set(['\n']))).toBe('1  caf\\xe9  😀\n');
    expect(terminalSafe('1  \u202epeek\n', new Set(['\n']))).toBe('1  \\u202epeek\n');
    const lookalike = JSON.stringify({ name: 'kee\u200bp' });
    expect(JSON.parse(terminalSafe(lookalike, new Set(['\n'])))).toEqual({ name: 'kee\u200bp' });
    const json = JSON.stringify({ name: 'x\u007fy\u0085z\u001b' });
    expect(JSON.parse(terminalSafe(json, new Set(['\n', '\t'])))).toEqual({ name: 'x\u007fy\u0085z\u001b' });
  });

  it('escapes exactly what a unit-by-unit reading escapes, on random text of controls, hidden characters, lone and paired surrogates', () => {
    // The reference: every unit looked at, as the rule says (a non-UTF-8 byte as \xHH, a hidden character as its units, a control not kept as \xHH or \u00HH).
    const reference = (text: string, keep: ReadonlySet<string>): string => {
      let out = '';
      for (let at = 0; at < text.length; at++) {
        const code = text.charCodeAt(at);
        const lone = code >= 0xdc80 && code <= 0xdcff && !(at > 0 && text.charCodeAt(at - 1) >= 0xd800 && text.charCodeAt(at - 1) <= 0xdbff);
        const point = text.codePointAt(at) ?? 0;
        const width = point > 0xffff ? 2 : 1;
        if (lone) out += `\\x${(code & 0xff).toString(16).padStart(2, '0')}`;
        else if (isHiddenCodePoint(point)) {
          for (let unit = 0; unit < width; unit++) out += `\\u${text.charCodeAt(at + unit).toString(16).padStart(4, '0')}`;
          at += width - 1;
        } else if ((code < 0x20 || (code >= 0x7f && code <= 0x9f)) && !keep.has(text[at] ?? '')) out += code < 0x20 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
        else out += text[at];
      }
      return out;
    };
    const pieces = ['a', 'Z', ' ', '\\', '\n', '\t', '\r', '\u001b', '\u007f', '\u0085', '\u009f', '\u00a0', '\u00ad', 'é', '\u200b', '\u200d', '\u202e', '\ufeff', '✓', '😀', '\u{e0020}', '\udb40', '\udce9', '\ud800\udc80', '\udcff', '语'];
    let state = 36;
    const next = (bound: number): number => {
      state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
      return state % bound;
    };
    for (const keep of [new Set(['\n', '\t']), new Set(['\n']), new Set<string>(), new Set(['\n', '\t', '\r', '\u0085'])]) {
      for (let round = 0; round < 400; round++) {
        let text = '';
        for (let count = next(40); count > 0; count--) text += pieces[next(pieces.length)];
        expect(terminalSafe(text, keep)).toBe(reference(text, keep));
      }
    }
  });
});
