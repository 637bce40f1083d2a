/**
 * Restore: one file or folder of a state copied out to a new place on the host, never into the disk
 * image. Everything is written under a hidden temporary name beside the target and takes the
 * target's name only once complete, and never over something already there. Names come from guest
 * filesystem bytes, so a name that could climb out of the target (`..`, a separator) is skipped.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { temporaryPathFor } from '../io/atomic-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { GuestFileEntry } from '../model.ts';
import type { StateFiles } from './state-files.ts';

export interface RestoreResult {
  /** Where the copy now is. */
  target: string;
  kind: 'file' | 'directory' | 'symlink';
  files: number;
  folders: number;
  symlinks: number;
  bytes: number;
  /** Entries not copied (device files, sockets, unsafe names) and why. */
  skipped: { path: string; reason: string }[];
}

const CHUNK_BYTES = 4 * 1024 * 1024;

export async function restoreFromState(files: StateFiles, guestPath: string, target: string, job: JobContext = silentJob): Promise<RestoreResult> {
  const entry = await files.stat(guestPath);
  if (entry.kind === 'other') throw new Qcow2Error('INVALID_ARGUMENT', `${guestPath} is not a file, folder or link; it cannot be copied out`);
  if (fs.existsSync(target)) throw new Qcow2Error('INVALID_ARGUMENT', `${target} already exists; choose another name`);
  const copy = new RestoreCopy(files, job, entry.kind === 'directory' ? await bytesUnder(files, guestPath, job) : entry.size);
  const temporary = temporaryPathFor(target);
  try {
    await copy.entry(entry, temporary);
    job.throwIfCancelled();
    commit(temporary, target, entry.kind);
  } catch (error) {
    fs.rmSync(temporary, { recursive: true, force: true });
    throw toQcow2Error(error, target);
  }
  syncFolder(path.dirname(target));
  job.progress('copying', copy.bytes, copy.totalBytes, 'bytes');
  return { target, kind: entry.kind, files: copy.files, folders: copy.folders, symlinks: copy.symlinks, bytes: copy.bytes, skipped: copy.skipped };
}

/** The copy takes the target's name; a name that appeared meanwhile is never replaced. */
function commit(temporary: string, target: string, kind: GuestFileEntry['kind']): void {
  if (kind === 'file') {
    // link() fails with EEXIST if the target exists: an atomic no-replace rename.
    fs.linkSync(temporary, target);
    fs.unlinkSync(temporary);
    return;
  }
  if (fs.existsSync(target)) throw new Qcow2Error('INVALID_ARGUMENT', `${target} already exists; choose another name`);
  fs.renameSync(temporary, target);
}

async function bytesUnder(files: StateFiles, folder: string, job: JobContext): Promise<number> {
  let bytes = 0;
  for (const entry of await files.list(folder)) {
    job.throwIfCancelled();
    if (entry.kind === 'file') bytes += entry.size;
    else if (entry.kind === 'directory' && safeName(entry.name)) bytes += await bytesUnder(files, entry.path, job);
  }
  return bytes;
}

function safeName(name: string): boolean {
  return name !== '' && name !== '.' && name !== '..' && !/[/\\\0]/.test(name);
}

class RestoreCopy {
  files = 0;
  folders = 0;
  symlinks = 0;
  bytes = 0;
  readonly skipped: RestoreResult['skipped'] = [];
  readonly totalBytes: number;
  private readonly source: StateFiles;
  private readonly job: JobContext;
  private buffer: Uint8Array | null = null;

  constructor(source: StateFiles, job: JobContext, totalBytes: number) {
    this.source = source;
    this.job = job;
    this.totalBytes = totalBytes;
  }

  async entry(entry: GuestFileEntry, hostPath: string): Promise<void> {
    this.job.throwIfCancelled();
    if (entry.kind === 'directory') await this.folder(entry, hostPath);
    else if (entry.kind === 'file') await this.file(entry, hostPath);
    else if (entry.kind === 'symlink') {
      fs.symlinkSync(entry.target ?? '', hostPath);
      this.symlinks++;
    } else this.skipped.push({ path: entry.path, reason: 'not a file, folder or link (a device, pipe or socket)' });
  }

  private async folder(entry: GuestFileEntry, hostPath: string): Promise<void> {
    fs.mkdirSync(hostPath);
    this.folders++;
    for (const child of await this.source.list(entry.path)) {
      if (!safeName(child.name)) {
        this.skipped.push({ path: child.path, reason: 'its name cannot be used on this computer' });
        continue;
      }
      await this.entry(child, path.join(hostPath, child.name));
    }
    setTime(hostPath, entry.mtimeMs);
  }

  private async file(entry: GuestFileEntry, hostPath: string): Promise<void> {
    this.buffer ??= new Uint8Array(CHUNK_BYTES);
    const fd = fs.openSync(hostPath, 'wx');
    try {
      let offset = 0;
      while (offset < entry.size) {
        this.job.throwIfCancelled();
        const wanted = Math.min(this.buffer.length, entry.size - offset);
        const read = await this.source.read(entry.path, this.buffer.subarray(0, wanted), offset);
        if (read === 0) break;
        fs.writeSync(fd, this.buffer, 0, read, offset);
        offset += read;
        this.bytes += read;
        this.job.progress('copying', this.bytes, this.totalBytes, 'bytes');
      }
      if (offset !== entry.size) throw new Qcow2Error('FILESYSTEM_CORRUPT', `${entry.path} ended after ${offset} of its ${entry.size} bytes`);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    setTime(hostPath, entry.mtimeMs);
    this.files++;
  }
}

function setTime(hostPath: string, mtimeMs: number | null): void {
  if (mtimeMs === null) return;
  const time = new Date(mtimeMs);
  fs.utimesSync(hostPath, time, time);
}

function syncFolder(folderPath: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(folderPath, 'r');
    fs.fsyncSync(fd);
  } catch {
    // Some platforms cannot sync a folder; the rename is still atomic there.
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}
