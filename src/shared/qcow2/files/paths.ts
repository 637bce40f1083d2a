/** Paths inside a state or a volume: POSIX-style from "/", resolved lexically (nothing here follows a link). */
import { Qcow2Error } from '../errors.ts';

/** The path's parts without empty ones, "." or ".." (which climbs, never above the root). */
export function pathParts(path: string): string[] {
  if (path.includes('\0')) throw new Qcow2Error('INVALID_ARGUMENT', 'A path cannot contain a NUL character');
  const parts: string[] = [];
  for (const part of path.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') parts.pop();
    else parts.push(part);
  }
  return parts;
}

/** "/a/b" for "a//b/", "/" for "" or "/". */
export function normalizePath(path: string): string {
  return `/${pathParts(path).join('/')}`;
}

export function joinPath(folder: string, name: string): string {
  return folder === '/' ? `/${name}` : `${folder}/${name}`;
}

/**
 * UTF-16 code units as a name. An unpaired surrogate (which no text can hold: a decoder would give
 * U+FFFD for each, and two names that differ there would read as one) is spelled \uXXXX, as
 * `ls -b` spells bytes it cannot show, and a backslash itself \\.
 */
const BACKSLASH = 0x5c;

export function utf16Name(units: ArrayLike<number>): string {
  let text = '';
  for (let index = 0; index < units.length; index++) {
    const unit = units[index] ?? 0;
    const next = units[index + 1] ?? 0;
    if (unit >= 0xd800 && unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      text += String.fromCharCode(unit, next);
      index++;
    } else if (unit >= 0xd800 && unit <= 0xdfff) {
      text += `\\u${unit.toString(16).toUpperCase()}`;
    } else if (unit === BACKSLASH) {
      // Spelled \\ as ext's names are: a name holding the characters \uDC00 is not one holding that surrogate.
      text += '\\\\';
    } else {
      text += String.fromCharCode(unit);
    }
  }
  return text;
}
