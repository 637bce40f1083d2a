/**
 * Whether two names are one file: by device and inode, which a symbolic link and a hard link share
 * with the file they name, where comparing resolved paths would take them for two files (and let a
 * backing chain loop back on itself through a link). A name that cannot be looked up (a missing
 * file) falls back to its physical path.
 *
 * Paths as the kernel resolves them: a `..` after a symbolic link to a folder goes up from where the
 * link leads. Node's path.resolve, path.join and fs.realpathSync fold `..` as text first, and so can
 * name another file (`link/../base.qcow2` is not `base.qcow2` when `link` leads elsewhere); QEMU
 * joins names as strings and leaves them to the kernel, and so does the engine.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostPath } from './host-path.ts';

export function fileIdentity(filePath: string): string {
  try {
    const stats = fs.statSync(hostPath(filePath), { bigint: true });
    return `${stats.dev}:${stats.ino}`;
  } catch {
    return `path:${physicalPath(filePath)}`;
  }
}

/** Which file `filePath` names now (device and inode), or null where nothing does: to tell whether a name was moved or replaced meanwhile. */
export function currentIdentity(filePath: string): string | null {
  try {
    const stats = fs.statSync(hostPath(filePath), { bigint: true });
    return `${stats.dev}:${stats.ino}`;
  } catch {
    return null;
  }
}

export function sameFile(a: string, b: string): boolean {
  return fileIdentity(a) === fileIdentity(b);
}

/** The absolute path the kernel reaches by `filePath` (links followed); for a missing file, its folder's. */
export function physicalPath(filePath: string): string {
  try {
    return fs.realpathSync.native(filePath);
  } catch {
    try {
      return path.join(fs.realpathSync.native(path.dirname(filePath)), path.basename(filePath));
    } catch {
      return path.resolve(filePath);
    }
  }
}

/** A path's parts between separators ('/'; on Windows '\\' too). */
export function pathSegments(filePath: string): string[] {
  return filePath.split(path.sep === '\\' ? /[\\/]/ : '/');
}

/**
 * The path with its folder part as the kernel resolves it, its last name kept as it is (a link's
 * own name stays); as given where the folder cannot be resolved. A '..' after a linked folder
 * climbs from where that folder really is, which path.join's and path.resolve's folding of the text
 * does not.
 */
export function withPhysicalFolder(filePath: string): string {
  try {
    return path.join(fs.realpathSync.native(path.dirname(filePath)), path.basename(filePath));
  } catch {
    return filePath;
  }
}
