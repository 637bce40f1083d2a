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
