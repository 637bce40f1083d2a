import { describe, expect, it } from 'vitest';
import { noSteps, runSteps, runStepsYielding, type Steps } from '../../src/shared/qcow2/steps.ts';

/** Steps that each hold the thread for `stepMs`, recording which step a timer fired during. */
function* busySteps(count: number, stepMs: number, log: string[]): Steps<number> {
  try {
    for (let step = 0; step < count; step++) {
      const until = performance.now() + stepMs;
      while (performance.now() < until);
      log.push(`step ${step}`);
      yield;
    }
    return count;
  } finally {
    log.push('cleanup');
  }
}

describe('steps', () => {
  it('runSteps takes the steps to their end in one go: no timer runs in between', async () => {
    const log: string[] = [];
    setTimeout(() => log.push('timer'), 0);
    expect(runSteps(busySteps(6, 5, log))).toBe(6);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(log.indexOf('timer')).toBe(log.length - 1);
    expect(log.indexOf('cleanup')).toBe(6);
  });

  it('runStepsYielding lets the event loop turn once a slice of time is used up', async () => {
    const log: string[] = [];
    setTimeout(() => log.push('timer'), 0);
    expect(await runStepsYielding(busySteps(20, 5, log), 12)).toBe(20);
    const timerAt = log.indexOf('timer');
    // A turn comes after every 12 ms (three steps); timers run at the second, long before the last step.
    expect(timerAt).toBeGreaterThan(0);
    expect(timerAt).toBeLessThanOrEqual(6);
    expect(log.at(-1)).toBe('cleanup');
  });

  it('a handler that runs between slices can stop the steps, and their cleanup still runs', async () => {
    const log: string[] = [];
    let cancelled = false;
    setTimeout(() => (cancelled = true), 0);
    function* cancellable(): Steps<void> {
      try {
        for (let step = 0; step < 1000; step++) {
          if (cancelled) throw new Error('cancelled');
          const until = performance.now() + 2;
          while (performance.now() < until);
          yield;
        }
      } finally {
        log.push('cleanup');
      }
    }
    await expect(runStepsYielding(cancellable(), 5)).rejects.toThrow('cancelled');
    expect(log).toEqual(['cleanup']);
  });

  it('noSteps is a computation with no steps, for step-wise callers with nothing to cut', () => {
    let calls = 0;
    const steps = noSteps(() => ++calls);
    expect(calls).toBe(0);
    expect(steps.next()).toEqual({ done: true, value: 1 });
  });
});
