/**
 * Text from inside a disk (guest file names, symlink targets) made safe for a terminal: a hostile
 * name can hold escape sequences (retitle the window, move the cursor, hide what follows) or line
 * breaks that fake more rows. Control characters are shown as \xHH, as the JSON output escapes them.
 */

import { backslashNeedsEscape, isHiddenCodePoint, unitEscapes } from '../shared/hidden-characters.ts';

/** C0 controls, DEL and C1 controls: what a terminal may act on. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

const unicodeEscape = (code: number): string => `\\u${code.toString(16).padStart(4, '0')}`;

/**
 * A byte of a name that is not UTF-8 (a snapshot or backing file name, decoded by the engine's
 * format/byte-string.ts as a lone surrogate U+DC80–U+DCFF): written as text it would become a
 * replacement character, so it is shown as \xHH.
 */
function escapedByte(text: string, at: number): number | null {
  const code = text.charCodeAt(at);
  if (code < 0xdc80 || code > 0xdcff) return null;
  const before = at > 0 ? text.charCodeAt(at - 1) : 0;
  return before >= 0xd800 && before <= 0xdbff ? null : code & 0xff;
}

const hexByte = (value: number): string => `\\x${value.toString(16).padStart(2, '0')}`;

function escaped(text: string, keepLayout: boolean, backslashesSpelled = false): string {
  let out = '';
  let at = 0;
  for (const character of text) {
    const code = character.charCodeAt(0);
    const layout = code === 0x0a || code === 0x09;
    const byte = escapedByte(text, at);
    // A backslash that starts what reads as an escape is doubled, so that no name spells another's escape.
    if (!backslashesSpelled && backslashNeedsEscape(text, at)) {
      out += '\\\\';
      at += 1;
      continue;
    }
    // Characters that hide or reorder others (shared/hidden-characters.ts): "\u202Epeek" printed as "keep".
    out += byte !== null ? hexByte(byte) : isControl(code) && !(keepLayout && layout) ? hexByte(code) : isHiddenCodePoint(character.codePointAt(0) ?? 0) ? unitEscapes(character) : character;
    at += character.length;
  }
  return out;
}

/** A name or path for one cell or line of output. */
export function printable(text: string): string {
  return escaped(text, false);
}

/**
 * A guest file name or path as the files engine lists it (files/paths.ts): its backslashes are
 * already spelled \\ and its bytes that are not UTF-8 \xNN, so a backslash is not doubled again
 * (printable gave systemd's dev-disk-by\\x2duuid four); controls and hidden characters as printable.
 */
export function printableListed(text: string): string {
  return escaped(text, false, true);
}

/** A message (an error's, which may name a guest path): escapes kept out, its own line breaks and tabs kept. */
export function printableMessage(text: string): string {
  return escaped(text, true);
}

/**
 * Everything a command prints, made safe whatever it holds (snapshot names and notes, bitmap
 * names, paths: qemu-img prints them raw). C0 controls other than `keep` become \xHH; DEL and C1
 * controls become \u00HH, an escape JSON reads too, so --json output stays valid JSON with the same
 * values (JSON.stringify escapes C0 controls itself, and leaves DEL and C1 as they are).
 */
export function terminalSafe(text: string, keep: ReadonlySet<string>): string {
  // Output can be megabytes (ls --json of a large folder), printed once by a process that has just
  // started: a regular expression (compiled to machine code at once) finds the units worth a closer
  // look, and the text is copied in runs between the characters escaped, not at all where there are none.
  const lookAt = unitsToLookAt(keep);
  lookAt.lastIndex = 0;
  let out = '';
  let runStart = 0;
  while (lookAt.test(text)) {
    const at = lookAt.lastIndex - 1;
    const code = text.charCodeAt(at);
    const byte = escapedByte(text, at);
    // A hidden character past U+FFFF (a tag) is a pair of units: both escaped, as JSON spells it.
    const hidden = code >= 0xad && isHiddenCodePoint(text.codePointAt(at) ?? 0) ? (code >= 0xd800 && code <= 0xdbff ? 2 : 1) : 0;
    if (byte === null && hidden === 0 && (!isControl(code) || keep.has(text[at] ?? ''))) continue;
    out += text.slice(runStart, at) + (byte !== null ? hexByte(byte) : hidden > 0 ? unitEscapes(text.slice(at, at + hidden)) : code < 0x20 ? hexByte(code) : unicodeEscape(code));
    runStart = at + Math.max(hidden, 1);
    lookAt.lastIndex = runStart;
  }
  return runStart === 0 ? text : out + text.slice(runStart);
}

/** Per set of controls kept, a pattern of every unit but printable ASCII and those controls (the cache holds one or two sets). */
const lookAtPatterns = new WeakMap<ReadonlySet<string>, RegExp>();

function unitsToLookAt(keep: ReadonlySet<string>): RegExp {
  let pattern = lookAtPatterns.get(keep);
  if (pattern === undefined) {
    let controls = '';
    for (let code = 0; code < 0x20; code++) if (!keep.has(String.fromCharCode(code))) controls += `\\x${code.toString(16).padStart(2, '0')}`;
    pattern = new RegExp(`[${controls}\\x7f-\\uffff]`, 'g');
    lookAtPatterns.set(keep, pattern);
  }
  return pattern;
}
