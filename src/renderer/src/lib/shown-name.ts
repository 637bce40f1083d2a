/**
 * A name from the disk (a snapshot's, a backing file's) as the app shows it. It may hold what a
 * screen cannot show faithfully: bytes that are not UTF-8 (the engine keeps them as lone surrogates
 * U+DC80–U+DCFF, which a page draws as "�" like a real U+FFFD), and characters that draw nothing but
 * reorder or hide text ("\u202Epeek" drew as "keep", "kee\u200Bp" too, so a user could pick the wrong
 * snapshot). Those are shown as \xHH and \uXXXX, as the command line shows them. Only for display:
 * requests name a snapshot by its id and its name exactly as the disk holds it.
 */

/** Bidi embeddings, overrides and isolates, direction marks, zero-width space, word joiner, BOM (not the joiners scripts need). */
const INVISIBLE = /[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/u;
const STRAY_BYTE = /[\udc80-\udcff]/u;

export function shownName(name: string): string {
  if (!INVISIBLE.test(name) && !STRAY_BYTE.test(name)) return name;
  let shown = '';
  for (const character of name) {
    const code = character.charCodeAt(0);
    if (character.length === 1 && code >= 0xdc80 && code <= 0xdcff) shown += `\\x${(code & 0xff).toString(16).padStart(2, '0')}`;
    else if (INVISIBLE.test(character)) shown += `\\u${code.toString(16).padStart(4, '0')}`;
    else shown += character;
  }
  return shown;
}
