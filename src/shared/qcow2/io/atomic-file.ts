/**
 * The one way Cowbell makes a whole new image file: write it under a temporary name in the same
 * folder, flush it, rename it into place, then flush the folder. A crash at any moment leaves
 * either no file (or the old one) or the complete new one, never a mix.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { BlockFile } from './block-file.ts';
import { closeQuietly, NodeBlockFile } from './block-file.ts';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { currentIdentity, pathSegments, physicalPath, withPhysicalFolder } from './file-identity.ts';
import { abandonedByWriters, inUseError, refuseReplacingHeld, writtenElsewhere } from './image-lock.ts';
import { keepAfterData, keepReplacedAttributes, readReplacedFile } from './replaced-file-attributes.ts';
import { noSteps, runSteps, type Steps } from '../steps.ts';
import { writeBehind } from './write-behind-file.ts';

export interface AtomicWriteOptions {
  /** Replace an existing file at targetPath (rewrites); otherwise an existing file is an error. */
  overwrite: boolean;
  /** Test seam: how files and folder syncs are done. */
  fileSystem?: AtomicFileSystem;
  /**
   * Make the new file durable before it takes its name, and the name after (default true). false
   * is qemu-img's cache=unsafe: still never a partial file under the name while the system runs,
   * but after a power failure the named file may be incomplete. Ignored when a file is replaced.
   */
  durable?: boolean;
  /** Write the file through a helper thread (write-behind-file.ts): for large, front-to-back output. */
  writeBehind?: boolean;
  /**
   * Called once the file is complete and flushed, just before it takes its name (the commit
   * point); throwing there (a cancel) removes it instead. The steps yield just before, so a
   * cancel asked for during the flush is seen.
   */
  beforeCommit?: () => void;
  /**
   * The file replaced is the caller's own source, held by its guard (rewrite.ts in place). Its
   * owner, group and extended attributes must then be kept, or nothing is written; a file replaced
   * by request keeps what can be kept (replaced-file-attributes.ts).
   */
  replacingOwnSource?: boolean;
  /**
   * The permission bits of the disk the new file is made from (convert, decrypt, compact… into an
   * OUTPUT): the new file opens to no one the source was closed to — a private encrypted disk's clear
   * copy stays private, from its first byte. A file that replaces another takes that one's instead.
   */
  sourceMode?: number;
}

/**
 * The permission bits a new file starts with (less the umask, or as a folder's default ACL says):
 * 0666 as cp and touch give, no wider than the source's, and always the owner's to read and write.
 */
export function newFileMode(sourceMode?: number): number {
  return (0o666 & (sourceMode ?? 0o777)) | 0o600;
}

export interface AtomicFileSystem {
  /** `mode`: the new file's permission bits (less the umask), newFileMode() unless given; 0600 for one that will replace another. */
  create(filePath: string, mode?: number): BlockFile;
  rename(from: string, to: string): void;
  /** Like rename, but fails if `to` exists. */
  renameNoReplace(from: string, to: string): void;
  remove(filePath: string): void;
  syncFolder(folderPath: string): void;
  exists(filePath: string): boolean;
  /**
   * Fails with IN_USE while another program writes the file about to be replaced (image-lock.ts),
   * or, unless it is the caller's own guarded source (whose guard holds writers off itself), holds
   * it against writers.
   */
  assertReplaceable?(filePath: string, ownSource: boolean): void;
  /** Removes temporary files an interrupted earlier write of `targetPath` left behind (best effort). */
  removeAbandonedTemporaries?(targetPath: string): void;
  /** Which file `filePath` names now (device and inode), or null where nothing does. */
  identity?(filePath: string): string | null;
  /**
   * The file a write to `targetPath` replaces: the file a symbolic link leads to (QEMU writes
   * through links too), or `targetPath` itself; NOT_A_FILE for a device, FIFO, socket or folder,
   * which a new file must never replace (nor be opened to check: a FIFO would block the open).
   */
  resolveTarget?(targetPath: string): string;
}

export const nodeFileSystem: AtomicFileSystem = {
  create: (filePath, mode) => NodeBlockFile.open(filePath, { create: true, createMode: mode ?? newFileMode() }),
  rename: (from, to) => fs.renameSync(from, to),
  renameNoReplace: (from, to) => {
    // link() fails with EEXIST if the target exists: an atomic no-replace rename on POSIX.
    fs.linkSync(from, to);
    try {
      fs.unlinkSync(from);
    } catch {
      // The file has its name: the temporary one left is removed by the next write of the target (removeAbandonedTemporaries).
    }
  },
  remove: (filePath) => fs.rmSync(filePath, { force: true }),
  syncFolder: (folderPath) => {
    let fd: number | null = null;
    try {
      fd = fs.openSync(folderPath, 'r');
      fs.fsyncSync(fd);
    } catch (error) {
      // Some platforms (Windows) cannot open or sync a folder; the rename is still atomic there.
      if ((error as { code?: string }).code !== 'EISDIR' && (error as { code?: string }).code !== 'EPERM') throw error;
    } finally {
      if (fd !== null) fs.closeSync(fd);
    }
  },
  exists: (filePath) => fs.existsSync(filePath),
  resolveTarget: (targetPath) => {
    let stats: fs.Stats;
    try {
      stats = fs.lstatSync(targetPath);
    } catch {
      return targetPath;
    }
    let resolved = targetPath;
    if (stats.isSymbolicLink()) {
      try {
        resolved = fs.realpathSync.native(targetPath);
      } catch (error) {
        throw new Qcow2Error('NOT_FOUND', `${targetPath} is a link to ${fs.readlinkSync(targetPath)}, which does not exist; name the file itself`, { cause: error });
      }
      stats = fs.statSync(resolved);
    }
    if (stats.isFile()) {
      if (isMountPoint(physicalPath(resolved))) throw mountPointError(targetPath);
      return resolved;
    }
    const what = stats.isDirectory() ? 'a folder' : stats.isBlockDevice() || stats.isCharacterDevice() ? 'a device' : stats.isFIFO() ? 'a named pipe (FIFO)' : 'not a regular file';
    throw new Qcow2Error('NOT_A_FILE', `${targetPath} is ${what}: Cowbell writes images into files only, and would replace it with one`);
  },
  removeAbandonedTemporaries: (targetPath) => {
    const folder = path.dirname(targetPath);
    let names: string[];
    try {
      names = fs.readdirSync(folder);
    } catch {
      return;
    }
    for (const name of names) {
      if (!isTemporaryNameFor(targetPath, name)) continue;
      removeIfAbandoned(path.join(folder, name));
    }
  },
  identity: currentIdentity,
  assertReplaceable: (filePath, ownSource) => {
    let fd: number;
    try {
      fd = fs.openSync(filePath, 'r');
    } catch (error) {
      throw toQcow2Error(error, filePath);
    }
    try {
      if (ownSource) {
        if (writtenElsewhere(fd)) throw inUseError();
      } else {
        refuseReplacingHeld(fd);
      }
    } finally {
      closeQuietly(fd);
    }
  },
};

/** A file bind-mounted over another (a container's volume) cannot be renamed over: the kernel refuses with EBUSY. */
function mountPointError(targetPath: string): Qcow2Error {
  return new Qcow2Error('NOT_A_FILE', `${targetPath} is a mount point (a file bind-mounted there, as a container's volume): a new file cannot take its place; rewrite the file where it really lives, or write to a new file (OUTPUT)`);
}

/** Whether a path (links resolved) is where something is mounted, as /proc/self/mountinfo lists them (Linux; elsewhere: no). */
function isMountPoint(physicalPath: string): boolean {
  let table: string;
  try {
    table = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  // The 5th field is the mount point, with space, tab, newline and backslash as octal escapes.
  const unescape = (field: string): string => field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return table.split('\n').some((line) => {
    const field = line.split(' ')[4];
    return field !== undefined && unescape(field) === physicalPath;
  });
}

/**
 * Just before the rename: the name must still lead to the file it led to when the write began (or
 * still to none), and that file must still be replaceable. A job takes minutes; meanwhile the user
 * may move another disk into place and start a VM on it, or another command may replace the file
 * or start using it — the rename would silently drop that disk, or leave its VM writing a deleted
 * file. Refused instead, nothing replaced (the temporary file is removed).
 */
function refuseChangedTarget(fileSystem: AtomicFileSystem, targetPath: string, identityAtStart: string | null, options: AtomicWriteOptions): void {
  if (fileSystem.identity === undefined) return;
  const identityNow = fileSystem.identity(targetPath);
  if (identityNow !== identityAtStart) {
    const what = identityAtStart === null ? 'was created by another program' : identityNow === null ? 'was moved or removed' : 'was replaced by another file';
    throw new Qcow2Error('IN_USE', `${targetPath} ${what} while Cowbell was writing its new version; nothing was replaced (run it again if that was meant)`);
  }
  if (options.overwrite && identityNow !== null) fileSystem.assertReplaceable?.(targetPath, options.replacingOwnSource === true);
}

/**
 * 'links/../disk.qcow2' with links a linked folder: the rename goes where the kernel climbs from
 * (beside where links really is), while path.join's folding of the text would put the temporary
 * file elsewhere, on another file system perhaps, and the rename would fail after all the work.
 */
function folderAsTheKernelFindsIt(targetPath: string): string {
  return pathSegments(path.dirname(targetPath)).includes('..') ? withPhysicalFolder(targetPath) : targetPath;
}

export function temporaryPathFor(targetPath: string): string {
  return path.join(path.dirname(targetPath), `${temporaryPrefix(targetPath)}${randomHex(12)}.tmp`);
}

/** Most file systems take names of at most 255 bytes. */
const NAME_MAX_BYTES = 255;
/** What a temporary name adds to the target's: "." before, ".cowbell-" + 12 hex digits + ".tmp" after. */
const TEMPORARY_EXTRA_BYTES = 1 + '.cowbell-'.length + 12 + '.tmp'.length;

/** ".NAME.cowbell-", NAME cut (on a character boundary) where the whole name would pass 255 bytes. */
function temporaryPrefix(targetPath: string): string {
  let name = path.basename(targetPath);
  const room = NAME_MAX_BYTES - TEMPORARY_EXTRA_BYTES;
  if (Buffer.byteLength(name) > room) {
    const characters = [...name];
    while (Buffer.byteLength(characters.join('')) > room) characters.pop();
    name = characters.join('');
  }
  return `.${name}.cowbell-`;
}

/**
 * Math.random, not node:crypto (whose loading is a tenth of a short command's start-up): the name
 * need only differ from others; the file is created exclusively (O_EXCL), so a name someone else
 * guessed and took first is an error, never a file or link of theirs written through.
 */
function randomHex(digits: number): string {
  let hex = '';
  while (hex.length < digits) hex += Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0');
  return hex.slice(0, digits);
}

/** Whether `name` (in the target's folder) is one of temporaryPathFor's names for `targetPath`. */
export function isTemporaryNameFor(targetPath: string, name: string): boolean {
  const prefix = temporaryPrefix(targetPath);
  return name.startsWith(prefix) && /^[0-9a-f]{12}\.tmp$/.test(name.slice(prefix.length));
}

/**
 * A crash (or a kill) during writeFileAtomically leaves its hidden temporary file, as large as the
 * output got. Only a Cowbell writer ever holds one open, and it holds Cowbell's lock while it does:
 * one whose lock is free is abandoned. Where locks cannot tell, nothing is removed. Housekeeping
 * only: no failure here may stop the write that asked for it.
 */
function removeIfAbandoned(filePath: string): void {
  let fd: number;
  try {
    if (!fs.lstatSync(filePath).isFile()) return;
    fd = fs.openSync(filePath, 'r+');
  } catch {
    return;
  }
  try {
    if (abandonedByWriters(fd)) fs.rmSync(filePath, { force: true });
  } catch {
    // Left for the next time.
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Makes the rename durable. It is done already: a failure here says so, rather than reading like
 * a failed write (the work is in place; only a power failure now could take the new name back).
 */
function syncFolderAfterCommit(fileSystem: AtomicFileSystem, targetPath: string): void {
  try {
    fileSystem.syncFolder(path.dirname(targetPath));
  } catch (error) {
    const typed = toQcow2Error(error, path.dirname(targetPath));
    throw new Qcow2Error(typed.code, `${targetPath} is written and in place, but its folder could not be flushed to disk (${typed.message}); until it is, a power failure could undo the new name`, { cause: error });
  }
}

/** Creates the temporary file; a failure names the target (and its folder), never the hidden name. */
function createTemporary(fileSystem: AtomicFileSystem, temporaryPath: string, targetPath: string, mode: number): BlockFile {
  try {
    return fileSystem.create(temporaryPath, mode);
  } catch (error) {
    const typed = toQcow2Error(error, targetPath);
    const folder = path.dirname(targetPath);
    if (typed.code === 'NOT_FOUND') {
      // ENOENT also comes from a folder that is there but takes no new files (/proc, /sys): only one found missing is said to be.
      if (!fileSystem.exists(folder)) throw new Qcow2Error('NOT_FOUND', `${targetPath}: the folder ${folder} does not exist`, { cause: error });
      throw new Qcow2Error('CANNOT_CREATE', `${targetPath} could not be created: the folder ${folder} exists, but its file system refused a new file there (ENOENT: no such file or directory)`, { cause: error });
    }
    if (typed.code === 'PERMISSION_DENIED') throw new Qcow2Error('PERMISSION_DENIED', `${targetPath}: no permission to create files in ${folder}`, { cause: error });
    throw new Qcow2Error(typed.code, typed.message.replaceAll(temporaryPath, targetPath), { cause: error });
  }
}

export function writeFileAtomically<T>(targetPath: string, build: (file: BlockFile, temporaryPath: string) => T, options: AtomicWriteOptions): T {
  return runSteps(writeFileAtomicallySteps(targetPath, (file, temporaryPath) => noSteps(() => build(file, temporaryPath)), options));
}

/** writeFileAtomically for a build done in steps (steps.ts), yielding where the build yields. */
export function* writeFileAtomicallySteps<T>(target: string, build: (file: BlockFile, temporaryPath: string) => Steps<T>, options: AtomicWriteOptions): Steps<T> {
  const fileSystem = options.fileSystem ?? nodeFileSystem;
  const targetPath = folderAsTheKernelFindsIt(fileSystem.resolveTarget?.(target) ?? target);
  if (!options.overwrite && fileSystem.exists(targetPath)) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${targetPath} already exists; choose another name`);
  }
  // Replacing a disk a VM runs would leave the VM writing to a file nobody sees any more; QEMU's create refuses too.
  if (options.overwrite && fileSystem.exists(targetPath)) fileSystem.assertReplaceable?.(targetPath, options.replacingOwnSource === true);
  // What the name leads to now: at the rename it must still lead there (see refuseChangedTarget).
  const identityAtStart = fileSystem.identity?.(targetPath) ?? null;
  // A file that replaces another is always made durable first: the old one must not go before it is.
  const durable = (options.durable ?? true) || (options.overwrite && fileSystem.exists(targetPath));
  // Owner, mode and extended attributes the new file takes over (the test seams' files have none).
  const replaced = options.overwrite && fileSystem === nodeFileSystem ? readReplacedFile(targetPath) : null;
  fileSystem.removeAbandonedTemporaries?.(targetPath);
  const temporaryPath = temporaryPathFor(targetPath);
  let file: BlockFile | null = null;
  try {
    // Replacing a file: no other user may open the new one before it has that file's owner and mode.
    file = createTemporary(fileSystem, temporaryPath, targetPath, replaced !== null ? 0o600 : newFileMode(options.sourceMode));
    const created = file instanceof NodeBlockFile ? file.descriptor : null;
    if (replaced !== null && created !== null) keepReplacedAttributes(created, replaced, options.replacingOwnSource === true);
    if (options.writeBehind === true) file = writeBehind(file, { startWriteback: durable });
    const result = yield* build(file, temporaryPath);
    // What the replaced file has now: the user may have changed its mode or ACL while this ran.
    const replacedNow = replaced === null ? null : (readReplacedFile(targetPath) ?? replaced);
    const specialBits = replacedNow !== null && created !== null && (replacedNow.stats.mode & 0o7000) !== 0;
    // Every write done (write-behind drained) before the setuid and setgid bits, which a write clears.
    if (durable || specialBits) file.flush();
    if (created !== null && replacedNow !== null) {
      keepReplacedAttributes(created, replacedNow, options.replacingOwnSource === true);
      keepAfterData(created, replacedNow);
    }
    file.close();
    file = null;
    yield;
    options.beforeCommit?.();
    refuseChangedTarget(fileSystem, targetPath, identityAtStart, options);
    try {
      if (options.overwrite) fileSystem.rename(temporaryPath, targetPath);
      else fileSystem.renameNoReplace(temporaryPath, targetPath);
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (code === 'EEXIST') throw new Qcow2Error('INVALID_ARGUMENT', `${targetPath} already exists; choose another name`);
      if (code === 'EBUSY' && isMountPoint(physicalPath(targetPath))) throw mountPointError(targetPath);
      throw toQcow2Error(error, targetPath);
    }
    if (durable) syncFolderAfterCommit(fileSystem, targetPath);
    return result;
  } catch (error) {
    try {
      file?.close();
    } catch {
      // The original error is the one worth reporting.
    }
    fileSystem.remove(temporaryPath);
    // A file system's own errors (ENOSPC, EIO from a flush or the folder sync) reach callers typed,
    // naming the file the user asked for: the hidden temporary one is gone, and was never theirs.
    const typed = toQcow2Error(error, targetPath);
    if (!typed.message.includes(temporaryPath)) throw typed;
    throw new Qcow2Error(typed.code, typed.message.replaceAll(temporaryPath, targetPath), { cause: error });
  }
}
