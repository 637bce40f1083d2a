/**
 * Whether two names are one file: by device and inode, which a symbolic link and a hard link share
 * with the file they name, where comparing resolved paths would take them for two files (and let a
 * backing chain loop back on itself through a link). A name that cannot be looked up (a missing
 * file) falls back to its resolved path.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

export function fileIdentity(filePath: string): string {
  try {
    const stats = fs.statSync(filePath, { bigint: true });
    return `${stats.dev}:${stats.ino}`;
  } catch {
    return `path:${path.resolve(filePath)}`;
  }
}

export function sameFile(a: string, b: string): boolean {
  return path.resolve(a) === path.resolve(b) || fileIdentity(a) === fileIdentity(b);
}
