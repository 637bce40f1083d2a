/**
 * A JobContext for a command that runs the engine on its own thread, letting the event loop turn
 * between steps (steps.ts): Ctrl-C (SIGINT), or a polite kill (SIGTERM: \`kill\`, \`timeout\`, a
 * service stopping; SIGHUP: the terminal closing) sets a flag the engine checks at its next step,
 * so the job stops there and cleans up after itself (no output, no temporary file — which could
 * hold a decrypted disk's data —; an original untouched). Left to Node's default, those two
 * would end the process at once and leave the temporary file behind.
 */
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import type { JobContext } from '../shared/qcow2/job-context.ts';
import type { CliIo } from './command.ts';

const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
type StopSignal = (typeof STOP_SIGNALS)[number];

/** Their numbers (the same on Linux, macOS and the BSDs): a shell reports 128 + it for a command a signal ended. */
const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

/**
 * A job stopped by a signal (or Ctrl-C at a prompt): CANCELLED, and the command exits with 128 + the
 * signal's number, as a shell reports for qemu-img ended by it — scripts tell an interruption from a failure.
 */
export class StoppedBySignal extends Qcow2Error {
  readonly exitCode: number;

  constructor(signal: StopSignal, message: string) {
    super('CANCELLED', message);
    this.exitCode = 128 + SIGNAL_NUMBERS[signal];
  }
}

export async function runCancellably<T>(
  run: (job: JobContext) => Promise<T>,
  onProgress: (stage: string, done: number, total: number) => void,
  cancelledMessage: string,
): Promise<T> {
  let stoppedBy: StopSignal | null = null;
  const listeners = STOP_SIGNALS.map((signal) => [signal, () => (stoppedBy ??= signal)] as const);
  const job: JobContext = {
    progress: (stage, done, total) => onProgress(stage, done, total),
    throwIfCancelled() {
      if (stoppedBy !== null) throw new StoppedBySignal(stoppedBy, cancelledMessage);
    },
  };
  for (const [signal, listener] of listeners) process.on(signal, listener);
  try {
    return await run(job);
  } finally {
    for (const [signal, listener] of listeners) process.off(signal, listener);
  }
}

/**
 * Runs an in-place change the engine makes in one go, with no point to stop at before its end
 * (snapshot create, apply, delete, rename and note; resize). Left to Node's default, Ctrl-C, SIGTERM
 * or SIGHUP would end the process between two of its writes and leave the disk marked dirty, with
 * leaked clusters and COPIED flags that `qemu-img check` reports as errors until a repair. Instead a
 * stop signal waits for the change (at most seconds) and is then reported on stderr; the command
 * keeps its own result and exit code — the change was made, and a script that took 130 for "not
 * done" would try it again.
 */
export async function finishingFirst<T>(io: CliIo, work: () => T | Promise<T>): Promise<T> {
  let stoppedBy: StopSignal | null = null;
  const listeners = STOP_SIGNALS.map((signal) => [signal, () => (stoppedBy ??= signal)] as const);
  for (const [signal, listener] of listeners) process.on(signal, listener);
  let done = false;
  try {
    const result = await work();
    done = true;
    return result;
  } finally {
    // A signal that came during the synchronous work reaches its listener on the event loop's next turn.
    await new Promise((resolve) => setImmediate(resolve));
    for (const [signal, listener] of listeners) process.off(signal, listener);
    // A change refused (nothing written) says why itself; only a change made is reported as finished first.
    if (stoppedBy !== null && done) io.err(`cowbell: ${stoppedBy as StopSignal} came while the disk was being changed; the change was finished first (stopped half-way, the disk would have needed a repair)\n`);
  }
}

/** qemu-img -p's progress line, rewritten in place on stderr at each hundredth of a percent. */
export function progressPrinter(io: CliIo): (stage: string, done: number, total: number) => void {
  let shown = -1;
  return (_stage, done, total) => {
    const hundredths = total > 0 ? Math.floor((done / total) * 10000) : 10000;
    if (hundredths === shown) return;
    shown = hundredths;
    io.err(`    (${(hundredths / 100).toFixed(2)}/100%)\r`);
  };
}

/**
 * Runs `run` with a progress callback that prints qemu-img -p's line on stderr when `show` (a no-op
 * otherwise), and ends that line with a newline once anything was printed, however `run` ends.
 */
export async function withProgressLine<T>(io: CliIo, show: boolean, run: (onProgress: (stage: string, done: number, total: number) => void) => Promise<T>): Promise<T> {
  const print = progressPrinter(io);
  let printed = false;
  try {
    return await run(
      show
        ? (stage, done, total) => {
            printed = true;
            print(stage, done, total);
          }
        : () => {},
    );
  } finally {
    if (printed) io.err('\n');
  }
}
