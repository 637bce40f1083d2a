/**
 * A name from the disk (a snapshot's, a backing file's) as the app shows it. It may hold what a
 * screen cannot show faithfully: bytes that are not UTF-8 (the engine keeps them as lone surrogates
 * U+DC80–U+DCFF, which a page draws as "�" like a real U+FFFD), and characters that draw nothing but
 * hide or reorder text ("\u202Epeek" drew as "keep", "kee\u200Bp" too, so a user could pick the wrong
 * snapshot; shared/hidden-characters.ts). Those are shown as \xHH and \uXXXX, as the command line
 * shows them. Only for display: requests name a snapshot by its id and its exact name.
 */
import { backslashNeedsEscape, isHiddenCodePoint, unitEscapes } from '../../../shared/hidden-characters.ts';

export function shownName(name: string): string {
  let shown = '';
  let at = 0;
  for (const character of name) {
    const code = character.charCodeAt(0);
    const position = at;
    at += character.length;
    // A backslash that starts what reads as an escape is doubled: "new\x0aline" spelled out is not the name with a line break.
    if (backslashNeedsEscape(name, position)) shown += '\\\\';
    else if (character.length === 1 && code >= 0xdc80 && code <= 0xdcff) shown += `\\x${(code & 0xff).toString(16).padStart(2, '0')}`;
    else if (isHiddenCodePoint(character.codePointAt(0) ?? 0)) shown += unitEscapes(character);
    else shown += character;
  }
  return shown;
}
