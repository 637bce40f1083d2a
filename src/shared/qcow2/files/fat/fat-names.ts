/**
 * Names in FAT folder entries: the 8.3 short name (OEM code page bytes, the lowercase bits
 * Windows NT keeps in byte 12), its checksum that binds long-name entries to it, and the UTF-16
 * pieces of a VFAT long name.
 */
import { utf16Name } from '../paths.ts';
import { simpleUpperCase } from '../simple-upcase.ts';

/** Code page 437 (the IBM PC's, Linux's default for FAT) for bytes 0x80-0xFF of short names. */
const CP437_HIGH =
  'ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0';

/** NT's case bits (byte 12 of an entry): the base name, the extension stored uppercase but shown lowercase. */
const LOWERCASE_BASE = 0x08;
const LOWERCASE_EXTENSION = 0x10;

export function oemText(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += byte < 0x80 ? String.fromCharCode(byte) : (CP437_HIGH[byte - 0x80] ?? '?');
  return text;
}

function lowerAscii(text: string): string {
  return text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase());
}

/** The short name of an entry (its first 11 bytes) as "BASE.EXT", with NT's case bits applied when `withCase`. */
export function shortName(entry: Uint8Array, withCase: boolean): string {
  const raw = entry.slice(0, 11);
  // A first byte 0x05 stands for 0xE5, which marks a deleted entry.
  if (raw[0] === 0x05) raw[0] = 0xe5;
  let base = oemText(raw.subarray(0, 8)).trimEnd();
  let extension = oemText(raw.subarray(8, 11)).trimEnd();
  const caseBits = entry[12] ?? 0;
  if (withCase && (caseBits & LOWERCASE_BASE) !== 0) base = lowerAscii(base);
  if (withCase && (caseBits & LOWERCASE_EXTENSION) !== 0) extension = lowerAscii(extension);
  return extension === '' ? base : `${base}.${extension}`;
}

/** Whether a short name's bytes are characters (no control bytes other than the 0x05 escape). */
export function shortNameBytesValid(entry: Uint8Array): boolean {
  for (let index = 0; index < 11; index++) {
    const byte = entry[index] ?? 0;
    if (byte < 0x20 && !(index === 0 && byte === 0x05)) return false;
  }
  return true;
}

/** The checksum of the 11 stored short-name bytes that each of its long-name entries repeats. */
export function shortNameChecksum(entry: Uint8Array): number {
  let sum = 0;
  for (let index = 0; index < 11; index++) sum = (((sum & 1) << 7) + (sum >> 1) + (entry[index] ?? 0)) & 0xff;
  return sum;
}

/** Where a long-name entry keeps its 13 UTF-16 code units. */
const LONG_NAME_UNIT_OFFSETS = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
export const LONG_NAME_UNITS_PER_ENTRY = LONG_NAME_UNIT_OFFSETS.length;

export function longNameUnits(entry: Uint8Array, into: Uint16Array, at: number): void {
  LONG_NAME_UNIT_OFFSETS.forEach((offset, index) => {
    into[at + index] = (entry[offset] ?? 0) | ((entry[offset + 1] ?? 0) << 8);
  });
}

/** The long name the units spell, up to the first NUL (an unpaired surrogate spelled \uXXXX: paths.ts utf16Name). */
export function longNameText(units: Uint16Array): string {
  const end = units.indexOf(0);
  return utf16Name(end < 0 ? units : units.subarray(0, end));
}

/** A name can be a path component: not empty, not "." or "..", no "/" or NUL. */
export function usableName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0');
}

/**
 * The key two names share when FAT would take them for the same one (its lookups ignore case, one
 * code unit at a time: a folder may hold both "straße.txt" and "STRASSE.TXT").
 */
export function nameKey(name: string): string {
  return simpleUpperCase(name);
}
