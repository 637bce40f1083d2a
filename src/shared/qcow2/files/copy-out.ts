/**
 * Restores a file or a folder of a state onto the host (never into the image): each file written
 * under a temporary name beside its target, flushed, then renamed into place, so a target is
 * complete or absent; an existing file is replaced only when the caller says so. A folder is
 * copied recursively (symlinks as symlinks, their targets untouched; devices and the like
 * skipped), each file with the guest's modification time. Guest names are checked before they
 * become host paths: a hostile filesystem's "..", "" or a name with a slash never leaves the target.
 */
import { Buffer } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { nodeFileSystem, temporaryPathFor } from '../io/atomic-file.ts';
import { startWriteback, WRITEBACK_STEP_BYTES } from '../io/file-writeback.ts';
import { alignedBytes } from '../io/aligned-bytes.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { GuestFileEntry } from '../model.ts';
import type { StateFiles } from './state-files.ts';
import { unescapedName } from '../guest-names.ts';
import { writeInPieces } from '../io/write-pieces.ts';
import { isAllZero } from '../format/zeroes.ts';

/** Guest bytes read at a time: contiguous extents come from the volume in one read (the volume's cache is bypassed). */
const CHUNK_BYTES = 8 * 1024 * 1024;
/**
 * The kernel's writeback of what was written is started every this many bytes, so the disk writes
 * while the copy goes on and the fsync before the rename has only the last piece to wait for.
 */

export interface CopyOutOptions {
  /** Replace files that already exist at the target (and copy into an existing folder). */
  overwrite: boolean;
  job?: JobContext;
  /**
   * Whether what a folder copy stopped half-way leaves stays for the user (the command line: the
   * error says what and where). False where the caller removes it (the app's Restore, whose copy is
   * under a temporary name): the error then says nothing of it.
   */
  keepsPartial?: boolean;
}

export interface CopyOutResult {
  /** The host path the file or folder was copied to. */
  target: string;
  files: number;
  folders: number;
  symlinks: number;
  /** Bytes of file content written. */
  bytes: number;
  /** Entries not copied, and why (devices, sockets, names no host path can hold, symlinks the host refused). */
  skipped: { path: string; reason: string }[];
}

interface PlannedEntry {
  entry: GuestFileEntry;
  target: string;
}

/**
 * Copies `guestPath` of the state to `destination`: into it when it is an existing folder (under
 * the entry's own name), else to that new name.
 */
export async function copyOut(files: StateFiles, guestPath: string, destination: string, options: CopyOutOptions): Promise<CopyOutResult> {
  const job = options.job ?? silentJob;
  const top = await files.stat(guestPath);
  const target = isFolder(destination) ? path.join(destination, hostName(top.name === '' ? 'root' : top.name, top.path)) : destination;
  const result: CopyOutResult = { target, files: 0, folders: 0, symlinks: 0, bytes: 0, skipped: [] };
  const plan: PlannedEntry[] = [];
  await planEntry(files, top, target, { plan, result, job, folders: new Set() });
  const total = plan.reduce((sum, planned) => sum + (planned.entry.kind === 'file' ? planned.entry.size : 0), 0);
  job.progress('copy-out', 0, total, 'bytes');
  // Folders made here, which get the guest's permissions once their contents are in.
  const madeFolders = new Set<string>();
  try {
    for (const { entry, target: entryTarget } of plan) {
      job.throwIfCancelled();
      if (entry.kind === 'directory') {
        if (makeFolder(entryTarget, entry, options.overwrite)) madeFolders.add(entryTarget);
        result.folders++;
      } else if (entry.kind === 'symlink') {
        if (makeSymlink(entry, entryTarget, options.overwrite, result)) result.symlinks++;
      } else {
        let fileBytes = 0;
        try {
          await copyFile(files, entry, entryTarget, options.overwrite, job, (written) => {
            fileBytes += written;
            result.bytes += written;
            job.progress('copy-out', result.bytes, total, 'bytes');
          });
        } catch (error) {
          // A file of a copied folder that the guest encrypted, or whose own data is damaged: the
          // others are still copied (a rescue copies what it can), this one is named as skipped.
          if (entry === plan[0]?.entry || !skippableInFolder(error)) throw error;
          result.bytes -= fileBytes;
          result.skipped.push({ path: entry.path, reason: (error as Qcow2Error).message });
          continue;
        }
        result.files++;
      }
    }
  } catch (error) {
    throw options.keepsPartial === false ? error : partlyCopied(error, top, result);
  }
  // Folders' times last: writing their files changed them.
  for (const { entry, target: entryTarget } of plan.toReversed()) {
    if (entry.kind !== 'directory') continue;
    if (madeFolders.has(entryTarget)) narrowFolderPermissions(entryTarget, entry);
    setTimes(entryTarget, entry);
  }
  return result;
}

interface Planning {
  plan: PlannedEntry[];
  result: CopyOutResult;
  job: JobContext;
  /** The folders planned so far (GuestFileEntry folderId): one met again is a loop or a folder linked twice. */
  folders: Set<string>;
}

/** What stops one entry of a folder copy but not the rest: the guest's own encryption, or damage to that entry. */
function skippableInFolder(error: unknown): boolean {
  return error instanceof Qcow2Error && (error.code === 'FILESYSTEM_UNSUPPORTED' || error.code === 'FILESYSTEM_CORRUPT');
}

/** Entries planned between turns of the event loop (a Ctrl-C handler, a cancel message). */
const PLAN_ENTRIES_PER_TURN = 256;

/**
 * A folder copy that stopped half-way leaves what it made (each file whole): the error says where,
 * so that it is not taken for nothing done — a second run would copy into that folder, not over it.
 */
function partlyCopied(error: unknown, top: GuestFileEntry, result: CopyOutResult): unknown {
  if (top.kind !== 'directory' || result.folders === 0 || !(error instanceof Qcow2Error)) return error;
  const made = `${result.files} file${result.files === 1 ? '' : 's'} and ${result.folders} folder${result.folders === 1 ? '' : 's'}`;
  // The same error, told more: a subclass (the command line's stop by a signal) keeps what it carries, its exit code.
  error.message = `${error.message}; the copy stopped there, leaving ${made} in ${result.target} (remove it before copying again, or copy over it with --force)`;
  return error;
}

/** The entries to copy, parents before children; what cannot be copied goes to `skipped`. */
async function planEntry(files: StateFiles, entry: GuestFileEntry, target: string, planning: Planning): Promise<void> {
  const { plan, result, job } = planning;
  if (plan.length % PLAN_ENTRIES_PER_TURN === 0) await new Promise((resolve) => setImmediate(resolve));
  job.throwIfCancelled();
  if (entry.kind === 'other') {
    result.skipped.push({ path: entry.path, reason: entry.damaged ?? 'not a file, folder or symlink (a device, pipe or socket)' });
    return;
  }
  if (entry.kind === 'directory' && entry.folderId !== undefined) {
    // A damaged filesystem's folder inside itself (or under two names) would be copied without end, or 2^depth times.
    if (planning.folders.has(entry.folderId)) {
      result.skipped.push({ path: entry.path, reason: 'the same folder as one copied already (a folder inside itself, or under two names: the filesystem is damaged)' });
      return;
    }
    planning.folders.add(entry.folderId);
  }
  plan.push({ entry, target });
  if (entry.kind !== 'directory') return;
  let children: GuestFileEntry[];
  try {
    children = await files.list(entry.path);
  } catch (error) {
    // A volume with no filesystem Cowbell reads (swap, an empty partition) inside a copied disk
    // root, or a damaged folder inside a copied one: the rest is copied, that one is skipped.
    if (!(error instanceof Qcow2Error) || (error.code !== 'NO_FILESYSTEM' && !skippableInFolder(error)) || entry === plan[0]?.entry) throw error;
    plan.pop();
    result.skipped.push({ path: entry.path, reason: error.message });
    return;
  }
  for (const child of children) {
    const name = safeName(child.name);
    if (name === null) {
      result.skipped.push({ path: child.path, reason: `its name (${JSON.stringify(child.name)}) cannot be a host file name` });
      continue;
    }
    // A guest name of 255 characters (NTFS, FAT's long names) can be more bytes than a host name may be.
    const nameBytes = Buffer.byteLength(name, 'utf8');
    if (nameBytes > HOST_NAME_MAX_BYTES) {
      result.skipped.push({ path: child.path, reason: `its name is ${nameBytes} bytes in UTF-8, longer than the ${HOST_NAME_MAX_BYTES} a host file name can be` });
      continue;
    }
    await planEntry(files, child, path.join(target, name), planning);
  }
}

async function copyFile(files: StateFiles, entry: GuestFileEntry, target: string, overwrite: boolean, job: JobContext, onWritten: (bytes: number) => void): Promise<void> {
  refuseExisting(target, overwrite, 'file');
  const temporary = temporaryPathFor(target);
  let fd: number | null = null;
  try {
    // Private from the start (a key, /etc/shadow); the guest's exact bits are set once it is written.
    fd = fs.openSync(temporary, 'wx', entry.permissions === undefined ? DEFAULT_FILE_PERMISSIONS : entry.permissions & 0o700);
    // Page-aligned: the kernel copies into and out of a misaligned buffer far more slowly (aligned-bytes.ts).
    const buffer = alignedBytes(Math.min(CHUNK_BYTES, Math.max(1, entry.size)));
    let writebackFrom = 0;
    // Only where the file may hold data: its holes are left to the truncate below (a 1 TiB sparse
    // lastlog took a minute of reading zeros: files audit 4).
    let readTo = 0;
    for (const range of await dataRangesOf(files, entry)) {
      if (range.offset > readTo) onWritten(range.offset - readTo);
      let offset = range.offset;
      const end = range.offset + range.length;
      while (offset < end) {
        // Let the event loop turn (a Ctrl-C handler, a cancel message) between chunks: the reads resolve without it.
        await new Promise((resolve) => setImmediate(resolve));
        job.throwIfCancelled();
        const count = await files.read(entry.path, buffer.subarray(0, Math.min(buffer.length, end - offset)), offset);
        if (count === 0) throw new Qcow2Error('FILESYSTEM_CORRUPT', `${entry.path} ended at ${offset} bytes, before its size of ${entry.size}`);
        writeLeavingHoles(fd, buffer.subarray(0, count), offset);
        offset += count;
        if (offset - writebackFrom >= WRITEBACK_STEP_BYTES) {
          startWriteback(fd, writebackFrom, offset - writebackFrom);
          writebackFrom = offset;
        }
        onWritten(count);
      }
      readTo = end;
    }
    if (entry.size > readTo) onWritten(entry.size - readTo);
    fs.ftruncateSync(fd, entry.size);
    if (entry.permissions !== undefined) fs.fchmodSync(fd, guestMode(entry.permissions));
    // The content and its size, as the engine flushes an image (fdatasync): the times are set after the rename anyway.
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    job.throwIfCancelled();
    // Without overwrite, a target that appeared meanwhile fails with EEXIST: never replace what was not ours to replace.
    if (overwrite) nodeFileSystem.rename(temporary, target);
    else nodeFileSystem.renameNoReplace(temporary, target);
    setTimes(target, entry);
    nodeFileSystem.syncFolder(path.dirname(target));
  } catch (error) {
    if (fd !== null) fs.closeSync(fd);
    try {
      fs.rmSync(temporary, { force: true });
    } catch {
      // The copy's own error is the one to report.
    }
    if ((error as { code?: unknown }).code === 'EEXIST') throw exists(target, 'file');
    throw toQcow2Error(error, target);
  }
}

/**
 * The file's parts that may hold data, clipped to its size, in order, runs that follow each other
 * joined (a fragmented file is still read in whole chunks); the whole file where the reader cannot say.
 */
async function dataRangesOf(files: StateFiles, entry: GuestFileEntry): Promise<{ offset: number; length: number }[]> {
  const whole = [{ offset: 0, length: entry.size }];
  const ranges = await files.dataRanges?.(entry.path);
  if (ranges === null || ranges === undefined) return whole;
  const joined: { offset: number; length: number }[] = [];
  let previousEnd = 0;
  for (const range of ranges) {
    // Out of order or overlapping: not a map to trust with what is skipped.
    if (range.offset < previousEnd) return whole;
    previousEnd = range.offset + range.length;
    const end = Math.min(previousEnd, entry.size);
    if (end <= range.offset) continue;
    const last = joined.at(-1);
    if (last !== undefined && last.offset + last.length === range.offset) last.length = end - last.offset;
    else joined.push({ offset: range.offset, length: end - range.offset });
  }
  return joined;
}

/** Zeros written as holes, a 64 KiB piece at a time: a guest's sparse 5 GiB file is not 5 GiB of blocks on the host. */
const HOLE_PIECE_BYTES = 64 * 1024;

function writeLeavingHoles(fd: number, bytes: Uint8Array, offset: number): void {
  let runStart = -1;
  for (let at = 0; at < bytes.length; at += HOLE_PIECE_BYTES) {
    if (!isAllZero(bytes.subarray(at, at + HOLE_PIECE_BYTES))) {
      if (runStart < 0) runStart = at;
      continue;
    }
    if (runStart >= 0) writeInPieces(fd, bytes.subarray(runStart, at), offset + runStart);
    runStart = -1;
  }
  if (runStart >= 0) writeInPieces(fd, bytes.subarray(runStart), offset + runStart);
}

/**
 * The guest's permission bits as they were, umask or not, as `cp -p` restores them (a shared 2775
 * folder came back 0755, a 0666 file 0644), the sticky bit too (a /tmp-like folder) — but never
 * setuid or setgid: a guest's setuid program restored by root would run as root here.
 */
function guestMode(permissions: number): number {
  return permissions & 0o1777;
}

/** Where the filesystem keeps no permissions (FAT, NTFS): what cp gives a new file or folder, less the umask. */
const DEFAULT_FILE_PERMISSIONS = 0o644;
const DEFAULT_FOLDER_PERMISSIONS = 0o755;

/** Whether the folder's permissions are to be narrowed to the guest's at the end: one it made, or an existing one it had to open. */
function makeFolder(target: string, entry: GuestFileEntry, overwrite: boolean): boolean {
  // A real folder only: a symlink there (an earlier copy-out restored one) is replaced, never
  // followed, or what is copied into it would land wherever it leads, outside the destination.
  if (isRealFolder(target)) {
    if (!overwrite) throw exists(target, 'folder');
    // An earlier copy of a read-only guest folder (0500): writable again until this copy is in, then narrowed as it was.
    const mode = fs.statSync(target).mode;
    if ((mode & 0o700) === 0o700) return false;
    try {
      fs.chmodSync(target, (mode & 0o777) | 0o700);
    } catch (error) {
      throw toQcow2Error(error, target);
    }
    return true;
  }
  refuseExisting(target, overwrite, 'folder');
  try {
    if (lexists(target)) fs.unlinkSync(target);
    // With the owner's bits until its contents are in (a 0500 folder could not take them); mkdir applies the umask.
    fs.mkdirSync(target, ((entry.permissions ?? DEFAULT_FOLDER_PERMISSIONS) & 0o777) | 0o700);
  } catch (error) {
    throw toQcow2Error(error, target);
  }
  return true;
}

/** A folder made (or opened) for the copy gets the guest's bits once its contents are in (guestMode); without any (FAT, NTFS) it keeps what mkdir gave it. */
function narrowFolderPermissions(target: string, entry: GuestFileEntry): void {
  if (entry.permissions === undefined) return;
  try {
    fs.chmodSync(target, guestMode(entry.permissions));
  } catch (error) {
    throw toQcow2Error(error, target);
  }
}


function makeSymlink(entry: GuestFileEntry, target: string, overwrite: boolean, result: CopyOutResult): boolean {
  // Listed without a target: the link is damaged (ext-filesystem.ts linkEntry).
  if (entry.target === undefined) {
    result.skipped.push({ path: entry.path, reason: 'where the link leads cannot be read (the filesystem is damaged there)' });
    return false;
  }
  refuseExisting(target, overwrite, 'symlink');
  try {
    if (overwrite && lexists(target) && !isRealFolder(target)) fs.unlinkSync(target);
    fs.symlinkSync(entry.target, target);
    setTimes(target, entry);
    return true;
  } catch (error) {
    result.skipped.push({ path: entry.path, reason: `the host refused the symlink (${(error as { code?: string }).code ?? String(error)})` });
    return false;
  }
}

function refuseExisting(target: string, overwrite: boolean, what: string): void {
  let existing: fs.Stats;
  try {
    existing = fs.lstatSync(target);
  } catch {
    return;
  }
  if (!overwrite) throw exists(target, what);
  // --force replaces files, never a folder (with whatever is in it) standing where a file goes.
  if (existing.isDirectory()) throw new Qcow2Error('INVALID_ARGUMENT', `${target} is a folder, where the guest has a ${what}: --force replaces files, never folders; move it away first`);
  // --force replaces a file or a symlink, never a device, pipe or socket (/dev/null named as the destination).
  if (!existing.isFile() && !existing.isSymbolicLink()) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${target} is a device, pipe or socket, not a file: Cowbell copies files into files and folders only; choose another name`);
  }
}

function exists(target: string, what: string): Qcow2Error {
  return new Qcow2Error('INVALID_ARGUMENT', `${target} already exists; choose another name${what === 'folder' || what === 'file' ? ' or pass --force to replace it' : ''}`);
}

/** A folder itself, not a symlink to one. */
function isRealFolder(hostPath: string): boolean {
  try {
    return fs.lstatSync(hostPath).isDirectory();
  } catch {
    return false;
  }
}

/** Whether anything is there, a dangling symlink included. */
function lexists(hostPath: string): boolean {
  try {
    fs.lstatSync(hostPath);
    return true;
  } catch {
    return false;
  }
}

/** The destination the user named is a folder (a symlink to one is theirs to follow). */
function isFolder(hostPath: string): boolean {
  try {
    return fs.statSync(hostPath).isDirectory();
  } catch {
    return false;
  }
}

/** A guest name that is one host path component, or null. */
/** Linux's (and most file systems') limit on one name. */
const HOST_NAME_MAX_BYTES = 255;

function safeName(guestName: string): string | null {
  const name = unescapedName(guestName);
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) return null;
  if (process.platform === 'win32' && /[\\:*?"<>|]/.test(name)) return null;
  return name;
}


function hostName(name: string, guestPath: string): string {
  const safe = safeName(name);
  if (safe === null) throw new Qcow2Error('INVALID_ARGUMENT', `${guestPath}'s name cannot be a host file name; give a new name as the destination`);
  return safe;
}

/** The guest's modification time, on the entry itself: lutimes, so a symlink's own time (utimes would follow it to its target). */
function setTimes(target: string, entry: GuestFileEntry): void {
  if (entry.mtimeMs === null) return;
  try {
    // Seconds as a double: 1683263105.123 is 1683263105.1229999 there, and the host kept
    // .122999906 — a millisecond before the guest's (files audit 8). Half a microsecond more keeps
    // the restored time in the guest's millisecond; a whole second is exact as it is (and a time
    // before 1970 goes as a Date, which the host keeps right).
    const time = entry.mtimeMs > 0 && entry.mtimeMs % 1000 !== 0 ? entry.mtimeMs / 1000 + 5e-7 : new Date(entry.mtimeMs);
    fs.lutimesSync(target, time, time);
  } catch {
    // Times are a courtesy: a host that refuses them still has the content.
  }
}
