import * as fs from 'node:fs';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { seekEnd } from './file-seek.ts';
import { hostPath } from './host-path.ts';
import { lockForGuardedReading, lockForGuarding, lockForReading, lockForWriting } from './image-lock.ts';
import { writeInPieces } from './write-pieces.ts';

/**
 * The engine's only view of storage: synchronous byte-offset I/O. The engine runs in a worker
 * thread (or the CLI), so synchronous calls keep metadata ordering simple and explicit.
 * Tests substitute a fault-injecting implementation.
 */
export interface BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  /** Opened read-only while another program (a VM, qemu-nbd, another Cowbell) holds it for writing. */
  readonly inUseElsewhere?: boolean;
  /** Reads up to buffer.length bytes at position; returns the count read (short only at end of file). */
  read(buffer: Uint8Array, position: number): number;
  write(buffer: Uint8Array, position: number): void;
  /** Makes every earlier write durable before any later one (fdatasync). */
  flush(): void;
  size(): number;
  truncate(size: number): void;
  close(): void;
  /**
   * A buffer to fill and then write from without a copy (write-behind-file.ts), or null. It is the
   * caller's until the next call; bytes passed to write() must not change.
   */
  lendBuffer?(length: number): Uint8Array | null;
}

/** A BlockFile that can give the descriptor of its open file (NodeBlockFile), for calls Node lacks (lseek, sync_file_range) and helper threads. */
export interface DescribedBlockFile extends BlockFile {
  readonly descriptor: number;
}

/** Closes a descriptor only read from: a failure there (EIO on some file systems) takes nothing from what was read. */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    // Nothing was written through it.
  }
}

export function hasDescriptor(file: BlockFile): file is DescribedBlockFile {
  return typeof (file as { descriptor?: unknown }).descriptor === 'number';
}

export interface OpenOptions {
  readOnly?: boolean;
  create?: boolean;
  /** A created file's mode (less the umask, or as a folder's default ACL says); 0o666 unless given. */
  createMode?: number;
  /**
   * Read-only, and keep every other writer out while open. A file another program writes now opens
   * as a reader marked inUseElsewhere, for the opener to refuse in its own words — except with
   * replacing, which is IN_USE at once.
   */
  guard?: boolean;
  /** With guard: the rewrite will replace the file, so another Cowbell rewrite that would too waits for it (image-lock.ts). */
  replacing?: boolean;
}

/** How many times an open follows a file replaced under it while it waited for its lock. */
const MAX_REPLACED_RETRIES = 5;

/** Whether the path still names the file `opened` holds (not replaced by a rename, nor removed). */
function stillAtPath(opened: NodeBlockFile): boolean {
  const held = fs.fstatSync(opened.descriptor);
  let named: fs.Stats;
  try {
    named = fs.statSync(hostPath(opened.path));
  } catch {
    return false;
  }
  return held.dev === named.dev && held.ino === named.ino;
}

/**
 * A file on disk, locked the way QEMU locks images (image-lock.ts) for as long as it is open:
 * opening for writing fails with IN_USE while another program uses the file; opening read-only
 * never fails for that, but says so in `inUseElsewhere`.
 */
export class NodeBlockFile implements BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  readonly inUseElsewhere: boolean;
  private fd: number | null;
  /** Writes since the last fdatasync: a flush with none has nothing to make durable and skips the syscall. */
  private unsynced = false;

  private constructor(path: string, fd: number, readOnly: boolean, inUseElsewhere: boolean) {
    this.path = path;
    this.fd = fd;
    this.readOnly = readOnly;
    this.inUseElsewhere = inUseElsewhere;
  }

  static open(path: string, options: OpenOptions = {}): NodeBlockFile {
    for (let attempt = 1; ; attempt++) {
      const opened = NodeBlockFile.openOnce(path, options);
      if (options.create === true || stillAtPath(opened)) return opened;
      // Another Cowbell replaced the file (a compact renaming its new file over it) while this open
      // waited for its lock: what is locked is the old, unlinked file. Open what the path names now.
      opened.close();
      if (attempt >= MAX_REPLACED_RETRIES) throw new Qcow2Error('IN_USE', `${path} kept being replaced by another program while Cowbell waited to open it; try again when it has finished`);
    }
  }

  private static openOnce(path: string, options: OpenOptions): NodeBlockFile {
    const readOnly = (options.readOnly ?? false) || options.guard === true;
    let fd: number;
    try {
      // O_NONBLOCK: opening a FIFO named where a disk should be returns at once (and is refused
      // below) instead of waiting for a writer for ever; regular files and devices ignore it.
      const flags = options.create ? 'wx+' : (readOnly ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | fs.constants.O_NONBLOCK;
      fd = options.create ? fs.openSync(hostPath(path), flags, options.createMode ?? 0o666) : fs.openSync(hostPath(path), flags);
    } catch (error) {
      if ((error as { code?: unknown }).code === 'EEXIST') {
        throw new Qcow2Error('INVALID_ARGUMENT', `${path}: a file with that name already exists`, { cause: error });
      }
      throw toQcow2Error(error, path);
    }
    let inUseElsewhere = false;
    try {
      const stat = fs.fstatSync(fd);
      if (stat.isDirectory()) throw new Qcow2Error('NOT_A_FILE', `${path}: is a folder, not a disk image`);
      if (!stat.isFile() && !stat.isBlockDevice()) throw new Qcow2Error('NOT_A_FILE', `${path}: not a regular file`);
      if (readOnly && options.guard === true && options.replacing === true) lockForGuarding(fd, true);
      else if (readOnly && options.guard === true) inUseElsewhere = lockForGuardedReading(fd).writtenElsewhere;
      else if (readOnly) inUseElsewhere = lockForReading(fd).writtenElsewhere;
      else lockForWriting(fd);
    } catch (error) {
      fs.closeSync(fd);
      throw toQcow2Error(error, path);
    }
    return new NodeBlockFile(path, fd, readOnly, inUseElsewhere);
  }

  get descriptor(): number {
    if (this.fd === null) throw new Qcow2Error('INTERNAL', `${this.path}: used after close`);
    return this.fd;
  }

  read(buffer: Uint8Array, position: number): number {
    let done = 0;
    try {
      while (done < buffer.length) {
        const count = fs.readSync(this.descriptor, buffer, done, buffer.length - done, position + done);
        if (count === 0) break;
        done += count;
      }
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
    return done;
  }

  write(buffer: Uint8Array, position: number): void {
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
    this.unsynced = true;
    try {
      writeInPieces(this.descriptor, buffer, position);
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }

  flush(): void {
    if (this.readOnly || !this.unsynced) return;
    try {
      fs.fdatasyncSync(this.descriptor);
      this.unsynced = false;
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }

  size(): number {
    try {
      return fileSize(this.descriptor, this.path);
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }

  truncate(size: number): void {
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
    this.unsynced = true;
    try {
      fs.ftruncateSync(this.descriptor, size);
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }

  close(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    // A file only read from loses nothing to a failing close, and it may come after a change was
    // done (the old disk closed after the new one took its name).
    if (this.readOnly) {
      closeQuietly(fd);
      return;
    }
    try {
      fs.closeSync(fd);
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }
}

/**
 * The size of an open file, or of a block device (a disk, a partition, an LVM volume), for which
 * fstat says 0: read as that, a whole disk would convert to an empty one.
 */
export function fileSize(fd: number, filePath: string): number {
  const stat = fs.fstatSync(fd);
  if (!stat.isBlockDevice()) return stat.size;
  const end = seekEnd(fd);
  if (end === 'unknown') throw new Qcow2Error('UNSUPPORTED_FEATURE', `${filePath}: Cowbell cannot tell the size of a block device on this system`);
  return end;
}
