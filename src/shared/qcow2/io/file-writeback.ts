/**
 * Starting the kernel's writeback of a file range without waiting for it (Linux
 * sync_file_range(SYNC_FILE_RANGE_WRITE), through libc.ts): a long write can keep the disk busy as
 * it goes, so its final fdatasync has little left to do. It reports no write errors (the
 * fdatasync still does); where the call cannot be had, it does nothing.
 *
 * The call itself can block for as long as the kernel needs to queue the pages (tens of
 * milliseconds per 100 MiB here, more while the disk is busy), so on a thread whose event loop
 * turns (the command line's) it runs on libuv's thread pool instead, a few at a time, and the
 * writer goes on copying. Nothing waits for it: it changes no data and no order (only the
 * fdatasync does that), so a call that runs after its descriptor was closed — or reused for
 * another file — at worst starts another file's writeback early. Worker threads (the app's jobs)
 * call it in place: their loop does not turn during a job, and a call still out when a worker
 * ends is not one to leave to a native module's teardown.
 */
import { libc } from './libc.ts';

const SYNC_FILE_RANGE_WRITE = 2;

/** How much a writer writes between two starts of the writeback: each start costs a system call that queues the pages. */
export const WRITEBACK_STEP_BYTES = 8 * 1024 * 1024;

/** Calls out on the thread pool at once; past that a start waits in place (it never piles up). */
const MOST_IN_FLIGHT = 2;

interface SyncFileRange {
  (fd: number, offset: number, length: number, flags: number): number;
  /** koffi's asynchronous form: the call on libuv's thread pool, `done` on this thread's loop. */
  async: (fd: number, offset: number, length: number, flags: number, done: (error: unknown, result: number) => void) => void;
}

let syncFileRange: SyncFileRange | null | undefined;
let onMainThread: boolean | undefined;
let inFlight = 0;

function load(): SyncFileRange | null {
  if (syncFileRange !== undefined) return syncFileRange;
  const loaded = libc();
  // Only an optimisation: nothing to do without it.
  syncFileRange = loaded instanceof Error ? null : (loaded.library.func('int sync_file_range(int fd, int64_t offset, int64_t nbytes, unsigned int flags)') as unknown as SyncFileRange);
  return syncFileRange;
}

function isMainThread(): boolean {
  // Asked once, on first need: node:worker_threads is not loaded by a command that writes nothing.
  onMainThread ??= process.getBuiltinModule?.('node:worker_threads')?.isMainThread === true;
  return onMainThread;
}

export function startWriteback(fd: number, offset: number, length: number): void {
  const call = load();
  if (call === null) return;
  if (inFlight >= MOST_IN_FLIGHT || !isMainThread()) {
    call(fd, offset, length, SYNC_FILE_RANGE_WRITE);
    return;
  }
  inFlight++;
  call.async(fd, offset, length, SYNC_FILE_RANGE_WRITE, () => {
    inFlight--;
  });
}
