/**
 * Starting the kernel's writeback of a file range without waiting for it (Linux
 * sync_file_range(SYNC_FILE_RANGE_WRITE), through koffi as image-lock.ts does): a long write can
 * keep the disk busy as it goes, so its final fdatasync has little left to do. It reports no
 * write errors (the fdatasync still does); elsewhere, or if the call cannot be loaded, it does
 * nothing.
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';

const SYNC_FILE_RANGE_WRITE = 2;

type SyncFileRange = (fd: number, offset: number, length: number, flags: number) => number;
let syncFileRange: SyncFileRange | null | undefined;

function load(): SyncFileRange | null {
  if (syncFileRange !== undefined) return syncFileRange;
  syncFileRange = null;
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
    syncFileRange = koffi.load(null).func('int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)') as unknown as SyncFileRange;
  } catch {
    // Only an optimisation.
  }
  return syncFileRange;
}

export function startWriteback(fd: number, offset: number, length: number): void {
  load()?.(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
