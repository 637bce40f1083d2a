/** How guest file names are spelled as text, and back (no imports: the renderer proposes restore names with it too). */

/**
 * The name the guest gave, for the host: listings spell a backslash \\ and a byte that is not
 * UTF-8 \xNN (linux-names.ts guestFileName), and a copy named so broke what names it (systemd's
 * dev-disk-by\x2duuid-….swap came back with two backslashes, its .wants link dangling: files
 * audit 2). A name with such a byte has no spelling as host text here: it keeps the listing's.
 */
export function unescapedName(guestName: string): string {
  if (!guestName.includes('\\')) return guestName;
  let name = '';
  for (let at = 0; at < guestName.length; at++) {
    const character = guestName[at] as string;
    if (character !== '\\') {
      name += character;
      continue;
    }
    const next = guestName[at + 1];
    if (next === '\\') {
      name += '\\';
      at++;
      continue;
    }
    if (next === 'x' && /^[0-9a-f]{2}$/.test(guestName.slice(at + 2, at + 4))) return guestName;
    name += character;
  }
  return name;
}
