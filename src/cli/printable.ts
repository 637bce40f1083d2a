/**
 * Text from inside a disk (guest file names, symlink targets) made safe for a terminal: a hostile
 * name can hold escape sequences (retitle the window, move the cursor, hide what follows) or line
 * breaks that fake more rows. Control characters are shown as \xHH, as the JSON output escapes them.
 */

/** C0 controls, DEL and C1 controls: what a terminal may act on. */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

function escaped(text: string, keepLayout: boolean): string {
  let out = '';
  for (const character of text) {
    const code = character.charCodeAt(0);
    const layout = code === 0x0a || code === 0x09;
    out += isControl(code) && !(keepLayout && layout) ? `\\x${code.toString(16).padStart(2, '0')}` : character;
  }
  return out;
}

/** A name or path for one cell or line of output. */
export function printable(text: string): string {
  return escaped(text, false);
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
  let out = '';
  for (const character of text) {
    const code = character.charCodeAt(0);
    if (!isControl(code) || keep.has(character)) out += character;
    else if (code < 0x20) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += `\\u${code.toString(16).padStart(4, '0')}`;
  }
  return out;
}
