/**
 * Starting the engine's helper threads (the write-behind writer, the compressors) without ever
 * taking the process down. V8 reserves address space for a new thread's code and heap, and when
 * it cannot (`ulimit -v`, as on shared hosts) it aborts the whole process with a fatal
 * "Failed to reserve virtual memory for CodeRange" that no JavaScript can catch. So a thread is
 * started only when the address space left under the limit has room for it; otherwise, or when
 * the Worker constructor throws (thread limits), the caller does the work on its own thread and
 * the user is told once on stderr.
 */
import * as fs from 'node:fs';
import type { Worker, WorkerOptions } from 'node:worker_threads';

/**
 * Every helper thread's V8 limits. Their code is a few small functions: a 16 MiB code range (V8's
 * default is far larger) cuts what one thread reserves from ~600 MiB to ~100 MiB of address space
 * (measured with Node 24 here), so threads still start under tight limits.
 */
export const HELPER_THREAD_LIMITS = { codeRangeSizeMb: 16 } as const;

/** Address space a helper thread needs left under the limit, with margin for what it allocates. */
export const HELPER_THREAD_ROOM_BYTES = 384 * 1024 * 1024;

export interface ThreadRoomProbe {
  /** The address-space limit in bytes (RLIMIT_AS), or null when there is none. */
  limitBytes(): number | null;
  /** The address space this process has mapped, in bytes. */
  usedBytes(): number;
}

/** Reads Linux's /proc; where it cannot (another system), no limit is known and threads start as usual. */
export const procThreadRoomProbe: ThreadRoomProbe = {
  limitBytes() {
    const match = /^Max address space\s+(\S+)/m.exec(readProc('/proc/self/limits'));
    const value = match?.[1];
    return value === undefined || value === 'unlimited' ? null : Number(value);
  },
  usedBytes() {
    const match = /^VmSize:\s+(\d+) kB/m.exec(readProc('/proc/self/status'));
    return match?.[1] === undefined ? 0 : Number(match[1]) * 1024;
  },
};

function readProc(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Why no helper thread may start now, or null when one may. */
export function helperThreadRefusal(probe: ThreadRoomProbe = procThreadRoomProbe): string | null {
  const limit = probe.limitBytes();
  if (limit === null || !Number.isFinite(limit)) return null;
  const left = limit - probe.usedBytes();
  if (left >= HELPER_THREAD_ROOM_BYTES) return null;
  const mib = (bytes: number) => Math.max(0, Math.floor(bytes / (1024 * 1024)));
  return `the address-space limit (ulimit -v) leaves ${mib(left)} MiB, too little for a helper thread (${mib(HELPER_THREAD_ROOM_BYTES)} MiB)`;
}

let told = false;
let tell: (line: string) => void = (line) => process.stderr.write(line);

/** Says once per process that the work goes on without helper threads, and why. */
function tellOnce(reason: string): void {
  if (told) return;
  told = true;
  tell(`cowbell: working on one thread: ${reason}\n`);
}

/**
 * Each helper's thread name (Linux shows 15 bytes of it in `top -H` and /proc/PID/task/TID/comm;
 * Node 24 sets it from the Worker's `name`): which thread spends the CPU can be seen from outside.
 */
export const HELPER_THREAD_NAMES = { compress: 'cb-compress', earlyVerify: 'cb-early-verify', writeBehind: 'cb-write-behind' } as const;
export type HelperThreadName = (typeof HELPER_THREAD_NAMES)[keyof typeof HELPER_THREAD_NAMES];

/**
 * A started helper thread, or null when none can start (the reason is told once). Its 'error'
 * event is handled here: a thread that fails after starting must not take the process down; the
 * callers notice through their shared state (a thread that never reports ready gets no work).
 */
export function startHelperThread(script: string | URL, name: HelperThreadName, options: WorkerOptions, probe: ThreadRoomProbe = procThreadRoomProbe): Worker | null {
  const refusal = helperThreadRefusal(probe);
  if (refusal !== null) {
    tellOnce(refusal);
    return null;
  }
  let worker: Worker;
  try {
    // Taken here, not imported: node:worker_threads loads Node's streams, a few milliseconds of every command's start-up.
    const { Worker } = process.getBuiltinModule('node:worker_threads');
    worker = new Worker(script, { ...options, name, resourceLimits: { ...HELPER_THREAD_LIMITS, ...options.resourceLimits } });
  } catch (error) {
    tellOnce(`a helper thread could not start (${error instanceof Error ? error.message : String(error)})`);
    return null;
  }
  worker.on('error', (error) => tellOnce(`a helper thread failed (${error.message})`));
  return worker;
}

/** How long a helper thread told to stop may take to end on its own before it is terminated. */
export const HELPER_END_MS = 5_000;

/**
 * Lets a helper thread that its caller has told to stop (through their shared memory) end on its
 * own, and terminates it only if it has not after `graceMs` (one that never started, or hangs).
 * Terminating a thread that is ending anyway races V8's teardown of it: Node 24 has died of a V8
 * check ("jit_page.has_value()") while a worker thread ended. The timer does not hold the process.
 */
export function endHelperThread(worker: Worker, graceMs = HELPER_END_MS): void {
  const timer = setTimeout(() => void worker.terminate(), graceMs);
  timer.unref();
  worker.once('exit', () => clearTimeout(timer));
}

/** How long a caller waits for its helper threads to start before going on without them. */
export const HELPER_START_MS = 500;

/**
 * Waits up to `ms` for `control[index]` to reach `count`, the helper threads adding one each as
 * they start (a thread starts in tens of milliseconds); whether it did. A thread that fails to
 * start cannot say so to a caller blocked here (its 'error' event needs the event loop): the
 * bound is what ends the wait.
 */
export function awaitHelperStart(control: Int32Array, index: number, count: number, ms = HELPER_START_MS): boolean {
  const deadline = Date.now() + ms;
  for (let ready = Atomics.load(control, index); ready < count; ready = Atomics.load(control, index)) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    Atomics.wait(control, index, ready, left);
  }
  return true;
}

/** For tests: capture what would go to stderr, and forget that it was said. */
export function resetHelperThreadNotice(sink?: (line: string) => void): void {
  told = false;
  tell = sink ?? ((line) => process.stderr.write(line));
}
