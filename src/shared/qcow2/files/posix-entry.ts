/** A listing's entry from a POSIX inode (ext, XFS): the kind from its mode, the rest as the inode says. */
import { Qcow2Error } from '../errors.ts';
import type { GuestFileEntry, GuestFileKind } from '../model.ts';

export const S_IFMT = 0o170000;
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
export const S_IFLNK = 0o120000;

/** What an entry needs of an inode. */
export interface PosixInode {
  number: number;
  mode: number;
  size: number;
  mtimeMs: number | null;
}

/** JavaScript's dates end 8.64e15 ms either side of 1970; btrfs keeps 64-bit seconds. */
const MAX_DATE_MS = 8.64e15;

/** A time a Date can hold, or null (a time past it is shown as none, not as a failure to list the folder). */
function dateValid(mtimeMs: number | null): number | null {
  return mtimeMs !== null && Number.isFinite(mtimeMs) && Math.abs(mtimeMs) <= MAX_DATE_MS ? mtimeMs : null;
}

/**
 * A listing's entry for `name` whose inode could not be read (`error`): damage there
 * (FILESYSTEM_CORRUPT) gives the name alone, marked damaged, instead of failing the folder; any
 * other error is thrown again. (Called from the readers' own try blocks: a closure per entry cost
 * a 50,000-entry folder 60 % more time.)
 */
export function damagedEntry(name: string, path: string, error: unknown): GuestFileEntry {
  if (!(error instanceof Qcow2Error) || error.code !== 'FILESYSTEM_CORRUPT') throw error;
  return { name, path, kind: 'other', size: 0, mtimeMs: null, damaged: error.message };
}

/** An entry as its inode tells it (a symlink's target is added by the reader). */
export function posixEntry(name: string, path: string, inode: PosixInode): GuestFileEntry {
  const kind = kindOfMode(inode.mode);
  const entry: GuestFileEntry = { name, path, kind, size: kind === 'directory' ? 0 : inode.size, mtimeMs: dateValid(inode.mtimeMs), permissions: inode.mode & 0o7777 };
  if (kind === 'directory') entry.folderId = String(inode.number);
  return entry;
}

/**
 * An entry with a symlink's target read by `readTarget`. In a listing, a link whose target cannot be
 * read (the link is damaged) shows without it rather than failing the whole folder (files audit 6:
 * one bad link hid its siblings); stat of the link itself still says why.
 */
export async function posixEntryWithTarget(path: string, inode: PosixInode, readTarget: () => Promise<string>, listing: boolean): Promise<GuestFileEntry> {
  const entry = posixEntry(path === '/' ? '' : path.slice(path.lastIndexOf('/') + 1), path, inode);
  if (entry.kind !== 'symlink') return entry;
  try {
    entry.target = await readTarget();
  } catch (error) {
    if (!listing || !(error instanceof Qcow2Error) || error.code !== 'FILESYSTEM_CORRUPT') throw error;
  }
  return entry;
}

function kindOfMode(mode: number): GuestFileKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

/** Entries in name order (UTF-16 code units, as files-diff walks them). */
export function byName(a: GuestFileEntry, b: GuestFileEntry): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * A folder's names with their inode numbers, in inode order: a filesystem keeps its inodes in that
 * order, and a large folder's inodes looked up in the folder's own (hash or name) order would read
 * the same table blocks again and again once its readers' caches are full.
 */
export function inInodeOrder(names: ReadonlyMap<string, number>): [string, number][] {
  return [...names].sort(([, a], [, b]) => a - b);
}
