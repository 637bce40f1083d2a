/**
 * Power cuts for whole files: an AtomicFileSystem (the seam atomic-file.ts takes) over memory
 * that logs every create, write, flush, rename, remove and folder sync, and rebuilds what a power
 * cut after any prefix of that log leaves on disk.
 */
import * as path from 'node:path';
import type { AtomicFileSystem } from '../../src/shared/qcow2/io/atomic-file.ts';
import type { BlockFile } from '../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';
import type { LossPattern } from './fault-file.ts';
import { GrowableBytes } from './growable-bytes.ts';
import { SeededRandom } from './seeded-random.ts';

export type FileSystemEvent =
  | { kind: 'create'; path: string; inode: number }
  | { kind: 'write'; inode: number; position: number; bytes: Uint8Array }
  | { kind: 'truncate'; inode: number; size: number }
  | { kind: 'flush'; inode: number }
  | { kind: 'close'; inode: number }
  | { kind: 'rename'; from: string; to: string; replace: boolean }
  | { kind: 'remove'; path: string }
  | { kind: 'sync-folder'; path: string };

interface Inode {
  data: GrowableBytes;
}

/**
 * An AtomicFileSystem over memory that logs every call. `crash` rebuilds what a power cut leaves:
 * a file's writes since its last flush may be lost in any subset; the names created, renamed or
 * removed since the folder's last sync are lost from some point on (a journalling file system
 * commits them in order, so a prefix survives).
 */
export class FaultFileSystem implements AtomicFileSystem {
  readonly log: FileSystemEvent[] = [];
  private readonly names = new Map<string, number>();
  private readonly inodes: Inode[] = [];
  /** The files before the run, by path: on disk, durable. */
  readonly initial: ReadonlyMap<string, Uint8Array>;

  constructor(initialFiles: Record<string, Uint8Array> = {}) {
    this.initial = new Map(Object.entries(initialFiles).map(([filePath, bytes]) => [filePath, bytes.slice()]));
    for (const [filePath, bytes] of this.initial) {
      this.inodes.push({ data: new GrowableBytes(bytes) });
      this.names.set(filePath, this.inodes.length - 1);
    }
  }

  create(filePath: string): BlockFile {
    if (this.names.has(filePath)) throw Object.assign(new Error(`EEXIST: ${filePath}`), { code: 'EEXIST' });
    this.inodes.push({ data: new GrowableBytes(new Uint8Array(0)) });
    const inode = this.inodes.length - 1;
    this.names.set(filePath, inode);
    this.log.push({ kind: 'create', path: filePath, inode });
    return new LoggedFile(filePath, inode, this.inodes[inode]?.data ?? new GrowableBytes(new Uint8Array(0)), this.log);
  }

  rename(from: string, to: string): void {
    this.move(from, to, true);
  }

  renameNoReplace(from: string, to: string): void {
    if (this.names.has(to)) throw Object.assign(new Error(`EEXIST: ${to}`), { code: 'EEXIST' });
    this.move(from, to, false);
  }

  private move(from: string, to: string, replace: boolean): void {
    const inode = this.names.get(from);
    if (inode === undefined) throw Object.assign(new Error(`ENOENT: ${from}`), { code: 'ENOENT' });
    this.names.delete(from);
    this.names.set(to, inode);
    this.log.push({ kind: 'rename', from, to, replace });
  }

  remove(filePath: string): void {
    if (!this.names.delete(filePath)) return;
    this.log.push({ kind: 'remove', path: filePath });
  }

  syncFolder(folderPath: string): void {
    this.log.push({ kind: 'sync-folder', path: folderPath });
  }

  /**
   * An existing file, read-only (nothing logged): what the file named `filePath` holds now, and
   * goes on holding after a rename takes the name away (an open file keeps its inode).
   */
  open(filePath: string): BlockFile {
    const inode = this.names.get(filePath);
    const data = inode === undefined ? undefined : this.inodes[inode]?.data;
    if (data === undefined) throw Object.assign(new Error(`ENOENT: ${filePath}`), { code: 'ENOENT' });
    return new ReadOnlyFile(filePath, data);
  }

  exists(filePath: string): boolean {
    return this.names.has(filePath);
  }

  /** The files as the running program sees them. */
  files(): Map<string, Uint8Array> {
    const files = new Map<string, Uint8Array>();
    for (const [filePath, inode] of this.names) files.set(filePath, this.inodes[inode]?.data.contents() ?? new Uint8Array(0));
    return files;
  }

  /**
   * The files on disk after a power cut following `cut` events: with `keep-all` every change
   * survives, with `lose-all` none since the last flush (data) or folder sync (names); a random
   * pattern keeps a random subset of unflushed data and a random prefix of unsynced name changes.
   */
  crash(cut: number, pattern: LossPattern): Map<string, Uint8Array> {
    // Whole files are judged at write granularity: a torn pattern counts as a random one here.
    const random = pattern.kind === 'random' || pattern.kind === 'torn' ? new SeededRandom(pattern.seed) : null;
    const decide = (): boolean => (pattern.kind === 'keep-all' ? true : pattern.kind === 'lose-all' ? false : (random?.next() ?? 0) < 0.5);
    const events = this.log.slice(0, cut);
    // Data: per inode, the changes after its last flush are each kept or lost.
    const lastFlush = new Map<number, number>();
    events.forEach((event, index) => {
      if (event.kind === 'flush') lastFlush.set(event.inode, index);
    });
    const keptData = new Set<number>();
    events.forEach((event, index) => {
      if (event.kind !== 'write' && event.kind !== 'truncate') return;
      if (index < (lastFlush.get(event.inode) ?? -1) || decide()) keptData.add(index);
    });
    // Names: after the last folder sync, a prefix of the name changes survives.
    let lastSync = -1;
    events.forEach((event, index) => {
      if (event.kind === 'sync-folder') lastSync = index;
    });
    const unsynced = events.map((event, index) => ({ event, index })).filter(({ event, index }) => index > lastSync && isNameChange(event));
    const survivingNames = pattern.kind === 'keep-all' ? unsynced.length : pattern.kind === 'lose-all' ? 0 : (random?.int(0, unsynced.length + 1) ?? 0);
    const lostNames = new Set(unsynced.slice(survivingNames).map(({ index }) => index));

    const names = new Map<string, number>();
    const contents = new Map<number, GrowableBytes>();
    let inodeIndex = 0;
    for (const [filePath, bytes] of this.initial) {
      names.set(filePath, inodeIndex);
      contents.set(inodeIndex, new GrowableBytes(bytes));
      inodeIndex++;
    }
    events.forEach((event, index) => {
      if (event.kind === 'create') {
        contents.set(event.inode, new GrowableBytes(new Uint8Array(0)));
        if (!lostNames.has(index)) names.set(event.path, event.inode);
      } else if (event.kind === 'write' && keptData.has(index)) contents.get(event.inode)?.write(event.bytes, event.position);
      else if (event.kind === 'truncate' && keptData.has(index)) contents.get(event.inode)?.truncate(event.size);
      else if (event.kind === 'rename' && !lostNames.has(index)) {
        const inode = names.get(event.from);
        if (inode !== undefined) {
          names.delete(event.from);
          names.set(event.to, inode);
        }
      } else if (event.kind === 'remove' && !lostNames.has(index)) names.delete(event.path);
    });
    const files = new Map<string, Uint8Array>();
    for (const [filePath, inode] of names) files.set(filePath, contents.get(inode)?.contents() ?? new Uint8Array(0));
    return files;
  }
}

function isNameChange(event: FileSystemEvent): boolean {
  return event.kind === 'create' || event.kind === 'rename' || event.kind === 'remove';
}

class LoggedFile implements BlockFile {
  readonly path: string;
  readonly readOnly = false;
  private readonly inode: number;
  private readonly data: GrowableBytes;
  private readonly log: FileSystemEvent[];
  private closed = false;

  constructor(filePath: string, inode: number, data: GrowableBytes, log: FileSystemEvent[]) {
    this.path = filePath;
    this.inode = inode;
    this.data = data;
    this.log = log;
  }

  read(buffer: Uint8Array, position: number): number {
    this.assertOpen();
    return this.data.read(buffer, position);
  }

  write(buffer: Uint8Array, position: number): void {
    this.assertOpen();
    const bytes = buffer.slice();
    this.log.push({ kind: 'write', inode: this.inode, position, bytes });
    this.data.write(bytes, position);
  }

  flush(): void {
    this.assertOpen();
    this.log.push({ kind: 'flush', inode: this.inode });
  }

  size(): number {
    this.assertOpen();
    return this.data.length;
  }

  truncate(size: number): void {
    this.assertOpen();
    this.log.push({ kind: 'truncate', inode: this.inode, size });
    this.data.truncate(size);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.log.push({ kind: 'close', inode: this.inode });
  }

  private assertOpen(): void {
    if (this.closed) throw new Qcow2Error('INTERNAL', `${this.path}: used after close`);
  }
}

class ReadOnlyFile implements BlockFile {
  readonly path: string;
  readonly readOnly = true;
  private readonly data: GrowableBytes;
  private closed = false;

  constructor(filePath: string, data: GrowableBytes) {
    this.path = filePath;
    this.data = data;
  }

  read(buffer: Uint8Array, position: number): number {
    this.assertOpen();
    return this.data.read(buffer, position);
  }

  write(): void {
    throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
  }

  flush(): void {}

  size(): number {
    this.assertOpen();
    return this.data.length;
  }

  truncate(): void {
    throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
  }

  close(): void {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new Qcow2Error('INTERNAL', `${this.path}: used after close`);
  }
}

/** The folder a path's name lives in (what syncFolder must be called with). */
export function folderOf(filePath: string): string {
  return path.dirname(filePath);
}
