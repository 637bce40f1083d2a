/**
 * Names in a qcow2 file (snapshot names and ids, the backing file's name) are bytes, not text:
 * QEMU takes them as C strings, and a name typed in a Latin-1 shell, or a Linux file name, need not
 * be UTF-8. Decoded with replacement characters, such a name came back changed when the table or
 * header was written again (a snapshot taken, a compact) and a backing file could not be found.
 *
 * Decoding here is lossless: valid UTF-8 becomes its text, and each byte that is not part of a
 * valid sequence becomes the lone surrogate U+DC80–U+DCFF holding it (the scheme of Python's
 * `surrogateescape`; valid UTF-8 never decodes to a lone surrogate, so nothing is ambiguous).
 * Encoding turns those surrogates back into their bytes. Output shows them as \xHH.
 */

const strict = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const encoder = new TextEncoder();

/** A lone low surrogate standing for one byte (U+DC80–U+DCFF); the `u` flag leaves pairs whole. */
const ESCAPED_BYTE = /[\udc80-\udcff]/u;

/** The length of the valid UTF-8 sequence starting at `at`, or 0 where the byte there starts none. */
function sequenceLength(bytes: Uint8Array, at: number): number {
  const lead = bytes[at] ?? 0;
  if (lead < 0x80) return 1;
  const continuation = (offset: number, low = 0x80, high = 0xbf): boolean => {
    const value = bytes[at + offset];
    return value !== undefined && value >= low && value <= high;
  };
  if (lead >= 0xc2 && lead <= 0xdf) return continuation(1) ? 2 : 0;
  if (lead >= 0xe0 && lead <= 0xef) {
    // E0 would be overlong below A0; ED above 9F would encode a surrogate.
    const second = lead === 0xe0 ? continuation(1, 0xa0) : lead === 0xed ? continuation(1, 0x80, 0x9f) : continuation(1);
    return second && continuation(2) ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const second = lead === 0xf0 ? continuation(1, 0x90) : lead === 0xf4 ? continuation(1, 0x80, 0x8f) : continuation(1);
    return second && continuation(2) && continuation(3) ? 4 : 0;
  }
  return 0;
}

export function decodeByteString(bytes: Uint8Array): string {
  try {
    return strict.decode(bytes);
  } catch {
    // Not UTF-8 throughout: decode the valid runs, escape each byte between them.
  }
  let text = '';
  let runStart = 0;
  let at = 0;
  while (at < bytes.length) {
    const length = sequenceLength(bytes, at);
    if (length > 0) {
      at += length;
      continue;
    }
    text += strict.decode(bytes.subarray(runStart, at)) + String.fromCharCode(0xdc00 | (bytes[at] ?? 0));
    at++;
    runStart = at;
  }
  return text + strict.decode(bytes.subarray(runStart));
}

export function encodeByteString(text: string): Uint8Array {
  if (!ESCAPED_BYTE.test(text)) return encoder.encode(text);
  const parts: number[] = [];
  for (const character of text) {
    const code = character.charCodeAt(0);
    if (character.length === 1 && code >= 0xdc80 && code <= 0xdcff) parts.push(code & 0xff);
    else for (const byte of encoder.encode(character)) parts.push(byte);
  }
  return Uint8Array.from(parts);
}

/** Whether `text` holds bytes that are not UTF-8 (escaped as above): a path then goes to the system as bytes. */
export function holdsEscapedBytes(text: string): boolean {
  return ESCAPED_BYTE.test(text);
}
