/**
 * What the concurrency tests do halfway through a job: act once in the middle of a stage (some of
 * it done, more to come), and try a write the way QEMU would, to see whether Cowbell's locks let it.
 */
import { spawnSync } from 'node:child_process';
import type { JobContext } from '../../src/shared/qcow2/job-context.ts';

/** A job context that runs `act` once, when `stage` has reported some progress and has more to do. */
export function onceMidway(stage: string, act: () => void): JobContext {
  let done = false;
  return {
    progress(now, reached, total) {
      if (now !== stage || done || reached === 0 || reached >= total) return;
      done = true;
      act();
    },
    throwIfCancelled() {},
  };
}

/** qemu-io's output for a 4 KiB write at the disk's start: 'Failed to get "write" lock' where something keeps writers out. */
export function qemuIoWrite(image: string): string {
  const result = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 0 4k', image], { encoding: 'utf8' });
  return result.stdout + result.stderr;
}
