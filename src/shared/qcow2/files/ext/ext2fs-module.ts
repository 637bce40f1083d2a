/**
 * The npm package `ext2fs` (libext2fs compiled to WebAssembly), one fresh instance per mounted
 * filesystem. Why fresh: the module is one Emscripten instance with a fixed 16 MiB heap; a hostile
 * filesystem that makes libext2fs allocate past it aborts the instance ("Aborted(OOM)", a
 * WebAssembly RuntimeError), and an aborted instance stays broken — every later call, even a new
 * mount of a sound filesystem, fails. An instance of its own per mount keeps one bad volume from
 * breaking the next. Loading the package also installs process-wide `uncaughtException` and
 * `unhandledRejection` handlers that rethrow (Emscripten's Node shell); they are removed again.
 */
import { createRequire } from 'node:module';
import { dirname, sep } from 'node:path';

/** The disk libext2fs reads through (node-ext2fs calls it with Node Buffers). */
export interface Ext2fsDisk {
  read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesRead: number; buffer: Buffer }>;
  write(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<never>;
  discard(offset: number, length: number): Promise<never>;
  flush(): Promise<void>;
}

export interface Ext2fsStats {
  mode: number;
  ino: number;
  size: number;
  mtime: Date;
  isDirectory(): boolean;
  isFile(): boolean;
  isSymbolicLink(): boolean;
}

export interface Ext2fsFileHandle {
  read(buffer: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

/** The part of the mounted filesystem's `promises` API Cowbell uses (nothing that writes). */
export interface Ext2fsPromises {
  readdir(path: string): Promise<string[]>;
  lstat(path: string): Promise<Ext2fsStats>;
  readlink(path: string): Promise<string>;
  open(path: string, flags: number): Promise<Ext2fsFileHandle>;
}

export interface Ext2fsMount {
  promises: Ext2fsPromises;
}

export interface Ext2fsModule {
  mount(disk: Ext2fsDisk, offset: number): Promise<Ext2fsMount>;
  umount(mount: Ext2fsMount): Promise<void>;
}

/** libext2fs's open flags (Linux values, as node-ext2fs passes them through). */
export const O_RDONLY = 0;
/** Without it a read updates the inode's atime: a write, which the read-only disk refuses. */
export const O_NOATIME = 0o1000000;
export const O_NOFOLLOW = 0o400000;

// Not named `require`: the bundled worker chunk declares its own `require` shim at the top, and a second declaration is a SyntaxError.
const requireHere = createRequire(import.meta.url);

/** A new, independent instance of the package (its own WebAssembly memory, queue and handles). */
export function loadExt2fsInstance(): Ext2fsModule {
  const packageDir = dirname(requireHere.resolve('ext2fs/package.json')) + sep;
  for (const key of Object.keys(requireHere.cache)) {
    if (key.startsWith(packageDir)) Reflect.deleteProperty(requireHere.cache, key);
  }
  const uncaught = new Set(process.listeners('uncaughtException'));
  const unhandled = new Set(process.listeners('unhandledRejection'));
  try {
    return requireHere('ext2fs') as Ext2fsModule;
  } finally {
    for (const listener of process.listeners('uncaughtException')) if (!uncaught.has(listener)) process.removeListener('uncaughtException', listener);
    for (const listener of process.listeners('unhandledRejection')) if (!unhandled.has(listener)) process.removeListener('unhandledRejection', listener);
  }
}
