/** Linux names (ext, XFS: any bytes but '/' and NUL) as text that keeps every name apart. */

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A folder entry's name as text: decodeGuestName, with a backslash itself spelled \\ (as `ls -b`
 * does), so that a name holding the four characters \xff and one holding the byte 0xff stay two.
 * (No byte of a UTF-8 sequence but the backslash itself is 0x5c: the name splits there safely.)
 */
export function guestFileName(bytes: Uint8Array): string {
  if (!bytes.includes(BACKSLASH)) return nameText(bytes);
  const parts: string[] = [];
  let start = 0;
  for (let index = 0; index <= bytes.length; index++) {
    if (index < bytes.length && bytes[index] !== BACKSLASH) continue;
    parts.push(nameText(bytes.subarray(start, index)));
    start = index + 1;
  }
  return parts.join('\\\\');
}

const BACKSLASH = 0x5c;

function nameText(bytes: Uint8Array): string {
  if (!isAscii(bytes, 0, bytes.length)) return decodeGuestName(bytes);
  // A name is at most 255 bytes on these filesystems (a damaged one may claim more): as character
  // codes at once, without a Buffer made for each of a large folder's names.
  return bytes.length <= SHORT_NAME_BYTES ? String.fromCharCode.apply(null, bytes as unknown as number[]) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

const SHORT_NAME_BYTES = 1024;

/**
 * A Linux name's bytes as text: UTF-8 where they are, and each byte that is not as `\xNN` (as
 * `ls -b` shows it). Replacing such bytes with U+FFFD would make two names that differ only there
 * one name, and one of the files would vanish from the listing and the copy.
 */
export function decodeGuestName(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    let text = '';
    let at = 0;
    while (at < bytes.length) {
      const lead = bytes[at] as number;
      const length = lead < 0x80 ? 1 : lead >> 5 === 6 ? 2 : lead >> 4 === 14 ? 3 : lead >> 3 === 30 ? 4 : 0;
      let character: string | null = null;
      if (length > 0 && at + length <= bytes.length) {
        try {
          character = strictUtf8.decode(bytes.subarray(at, at + length));
        } catch {
          character = null;
        }
      }
      if (character === null) {
        text += `\\x${lead.toString(16).padStart(2, '0')}`;
        at += 1;
      } else {
        text += character;
        at += length;
      }
    }
    return text;
  }
}

/** Whether a name's bytes are all ASCII (most names: cheaper than a TextDecoder call each). */
function isAscii(bytes: Uint8Array, start: number, length: number): boolean {
  for (let index = start; index < start + length; index++) if ((bytes[index] as number) >= 0x80) return false;
  return true;
}
