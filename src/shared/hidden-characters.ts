/**
 * Characters that draw nothing themselves but hide, reorder or stand in for others: Unicode's
 * default-ignorable code points (zero-width space, soft hyphen, word joiner, invisible operators,
 * fillers, tags, variation selectors, BOM), the bidi controls (overrides, embeddings, isolates,
 * marks) and the line and paragraph separators. In a name ("\u202Epeek" draws as "keep",
 * "kee\u200Bp" too) they would let one snapshot pass for another; the CLI and the app spell them out.
 * Left as they are: the zero-width (non-)joiners and the emoji/text variation selectors, which
 * scripts and emoji need to draw right.
 */
export function isHiddenCodePoint(cp: number): boolean {
  if (cp < 0xad) return false;
  return (
    cp === 0xad ||
    cp === 0x34f ||
    cp === 0x61c ||
    cp === 0x115f ||
    cp === 0x1160 ||
    cp === 0x17b4 ||
    cp === 0x17b5 ||
    (cp >= 0x180b && cp <= 0x180f) ||
    cp === 0x200b ||
    cp === 0x200e ||
    cp === 0x200f ||
    (cp >= 0x2028 && cp <= 0x202e) ||
    (cp >= 0x2060 && cp <= 0x206f) ||
    cp === 0x3164 ||
    (cp >= 0xfe00 && cp <= 0xfe0d) ||
    cp === 0xfeff ||
    cp === 0xffa0 ||
    (cp >= 0xfff0 && cp <= 0xfff8) ||
    (cp >= 0x1bca0 && cp <= 0x1bca3) ||
    (cp >= 0x1d173 && cp <= 0x1d17a) ||
    (cp >= 0xe0000 && cp <= 0xe0fff)
  );
}

/** `\uXXXX` for each UTF-16 unit of a character (a pair for one past U+FFFF): valid in JSON and JavaScript, naming the same text. */
export function unitEscapes(character: string): string {
  let escaped = '';
  for (let at = 0; at < character.length; at++) escaped += `\\u${character.charCodeAt(at).toString(16).padStart(4, '0')}`;
  return escaped;
}

/**
 * Whether the backslash at `at` must be shown doubled: where it starts what reads as one of the
 * escapes above (\xHH, \uXXXX) or a doubled backslash, a name spelling "new\x0aline" would
 * otherwise look like the name holding a line break. Other backslashes (C:\path) stay single.
 */
export function backslashNeedsEscape(text: string, at: number): boolean {
  if (text[at] !== '\\') return false;
  const next = text[at + 1];
  return next === 'x' || next === 'u' || next === '\\';
}
