/**
 * A long synchronous engine operation cut into steps: a generator that yields between units of
 * work (convert's chunks). A worker thread runs it straight through (runSteps); a caller on a
 * thread with an event loop to keep alive — the CLI, whose Ctrl-C handler must get to run — lets
 * the loop turn every few milliseconds (runStepsYielding). Either way the operation's own cleanup
 * (its finally blocks) runs, because both drivers take it to its end: cancelling is the job
 * context's business (throwIfCancelled), never the driver's.
 */
export type Steps<T> = Generator<void, T, void>;

export function runSteps<T>(steps: Steps<T>): T {
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
  }
}

/** How long the steps may hold the thread before the event loop gets a turn. */
const DEFAULT_SLICE_MS = 25;

/**
 * Milliseconds on a monotonic clock. Not `performance.now()`: Node loads its performance-timeline
 * modules on the first use of `performance`, which costs a short command a millisecond or two.
 */
function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export async function runStepsYielding<T>(steps: Steps<T>, sliceMs = DEFAULT_SLICE_MS): Promise<T> {
  let sliceStart = nowMs();
  for (;;) {
    const step = steps.next();
    if (step.done === true) return step.value;
    if (nowMs() - sliceStart >= sliceMs) {
      // setImmediate runs after the loop has polled for I/O, signals included.
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = nowMs();
    }
  }
}

/** The steps of a computation done all at once (a caller of a step-wise API with nothing to cut). */
// eslint-disable-next-line require-yield -- zero steps: the value is ready at the first next()
export function* noSteps<T>(compute: () => T): Steps<T> {
  return compute();
}
