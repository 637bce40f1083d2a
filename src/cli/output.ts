/**
 * The command's output, written to file descriptors 1 and 2 directly. process.stdout and
 * process.stderr would do the same writes (they are synchronous on Linux for files, pipes and
 * terminals), but creating them loads Node's streams, and for a pipe its net module: about 25 of
 * the internal modules `cowbell info` loaded, several milliseconds of a 60 ms command.
 *
 * A reader that has gone away (`cowbell info … | head -1`) ends the output, not the command: a
 * command that changes a disk finishes what it started, as if its output were still read.
 */
import { openSync, writeSync } from 'node:fs';
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { libc, loadedLibc } from '../shared/qcow2/io/libc.ts';

/** Fails a write to a descriptor left non-blocking by whoever shares it: it is tried again shortly. */
const TRY_AGAIN = 'EAGAIN';
/** The reader closed its end: a pipe says EPIPE, a socket (what Node gives a child's stdio) may say ECONNRESET. */
const READER_GONE = new Set(['EPIPE', 'ECONNRESET']);
const RETRY_PAUSE_MS = 1;

export interface Output {
  write(text: string): void;
  /** Why a write failed (not a reader gone), after which nothing more is written; null before. */
  failure(): Qcow2Error | null;
}

/**
 * Writes to a descriptor. A write that fails (a full disk, an I/O error behind a redirection) ends
 * the output but not the command, as in qemu-img: the command finishes its work (a change half
 * done would be worse than a lost report) and runCli decides what the loss means for its exit code.
 */
export function descriptorOutput(fd: number): Output {
  let readerGone = false;
  let failed: Qcow2Error | null = null;
  return {
    failure: () => failed,
    write(text) {
      if (readerGone || failed !== null || text.length === 0) return;
      const bytes = Buffer.from(text, 'utf8');
      let written = 0;
      while (written < bytes.length) {
        try {
          written += writeSync(fd, bytes, written, bytes.length - written);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code !== undefined && READER_GONE.has(code)) {
            readerGone = true;
            return;
          }
          // A full disk or a failing device behind the output: said as such (not an internal error), once the command is done.
          if (code !== TRY_AGAIN) {
            failed = new Qcow2Error('IO_ERROR', `could not write the output (${fd === 1 ? 'standard output' : 'standard error'}): ${(error as Error).message}`, { cause: error });
            return;
          }
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RETRY_PAUSE_MS);
        }
      }
    },
  };
}

/**
 * koffi, once loaded (libc.ts: locks need it), fsyncs descriptors 1 and 2 as the process exits (an
 * exit hook of its base library). An output redirected to a file (`cowbell info … >> report.txt`)
 * would be flushed to the disk at the end of every command, tens to hundreds of milliseconds where
 * the disk is busy, which qemu-img never does. Called as the process exits, after the last byte is
 * written: the two descriptors then lead to /dev/null, where that fsync does nothing.
 */
export function spareOutputsTheExitSync(): void {
  const loaded = loadedLibc();
  if (loaded === null) return;
  try {
    const dup2 = loaded.library.func('int dup2(int oldfd, int newfd)') as unknown as (from: number, to: number) => number;
    const nowhere = openSync('/dev/null', 'w');
    dup2(nowhere, 1);
    dup2(nowhere, 2);
  } catch {
    // Only the exit's speed depends on it.
  }
}

let isatty: ((fd: number) => number) | null | undefined;

/**
 * Whether a descriptor is a terminal, without creating process.stderr to ask (see above): the C
 * library's isatty where it is loaded anyway (locks need it), else Node's tty module.
 */
export function isTerminal(fd: number): boolean {
  if (isatty === undefined) {
    const loaded = libc();
    isatty = loaded instanceof Error ? null : (loaded.library.func('int isatty(int fd)') as unknown as (fd: number) => number);
  }
  // node:tty only when it must: it loads the net module.
  return isatty === null ? process.getBuiltinModule('node:tty').isatty(fd) : isatty(fd) === 1;
}
