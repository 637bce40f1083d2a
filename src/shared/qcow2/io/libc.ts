/**
 * The C library's calls Node does not offer (fcntl's OFD locks, lseek, sync_file_range), through
 * koffi — loaded once, on first need, and only on Linux, where those calls mean what the engine
 * expects. Each caller decides what to do without them.
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';

export interface Libc {
  koffi: typeof Koffi;
  /** The running program and its libraries (dlopen(NULL)), whatever the C library is called. */
  library: Koffi.LibraryHandle;
}

let loaded: Libc | Error | undefined;

/** The C library, or why it cannot be had here. */
export function libc(): Libc | Error {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') {
    loaded = new Error(`not on Linux (${process.platform})`);
    return loaded;
  }
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
    loaded = { koffi, library: koffi.load(null) };
  } catch (error) {
    loaded = error instanceof Error ? error : new Error(String(error));
  }
  return loaded;
}
