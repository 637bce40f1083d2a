/**
 * Starting the kernel's writeback of a file range without waiting for it (Linux
 * sync_file_range(SYNC_FILE_RANGE_WRITE), through libc.ts): a long write can keep the disk busy as
 * it goes, so its final fdatasync has little left to do. It reports no write errors (the
 * fdatasync still does); where the call cannot be had, it does nothing.
 */
import { libc } from './libc.ts';

const SYNC_FILE_RANGE_WRITE = 2;

/** How much a writer writes between two starts of the writeback: each start costs a system call that queues the pages. */
export const WRITEBACK_STEP_BYTES = 8 * 1024 * 1024;

type SyncFileRange = (fd: number, offset: number, length: number, flags: number) => number;
let syncFileRange: SyncFileRange | null | undefined;

function load(): SyncFileRange | null {
  if (syncFileRange !== undefined) return syncFileRange;
  const loaded = libc();
  // Only an optimisation: nothing to do without it.
  syncFileRange = loaded instanceof Error ? null : (loaded.library.func('int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)') as unknown as SyncFileRange);
  return syncFileRange;
}

export function startWriteback(fd: number, offset: number, length: number): void {
  load()?.(fd, offset, length, SYNC_FILE_RANGE_WRITE);
}
