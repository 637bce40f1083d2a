import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { EventName, EventPayloads, JobEnd, JobProgress } from '../../src/shared/ipc/contract.ts';
import { createJobManager, type JobSpecs } from '../../src/main/jobs.ts';
import { createPool } from '../../src/main/pool.ts';

const workerFile = fileURLToPath(new URL('./fixtures/test-worker.ts', import.meta.url));
const pool = createPool({ workerFile, maxThreads: 3, cancelGraceMs: 300 });
afterAll(() => pool.close());

const specs: JobSpecs = {
  'test.progress': { access: 'read', args: z.object({ steps: z.number().int(), stepMs: z.number() }).strict() },
  'test.sleep': { access: 'read', args: z.object({ ms: z.number() }).strict() },
  'test.write': { access: 'write', args: z.object({ ms: z.number() }).strict() },
  // A change past its commit point: it no longer heeds the cancel flag.
  'test.stubborn': { access: 'write', args: z.object({ ms: z.number() }).strict() },
  'test.fail': { access: 'read', args: z.object({ code: z.string(), message: z.string() }) },
  'test.gated': { access: 'read', args: z.object({ gate: z.string() }).strict() },
};

function harness(progressIntervalMs = 100) {
  const events: { event: EventName; payload: EventPayloads[EventName]; at: number }[] = [];
  const ends = new Map<string, (end: JobEnd) => void>();
  const emit = <E extends EventName>(event: E, payload: EventPayloads[E]) => {
    events.push({ event, payload, at: Date.now() });
    if (event === 'job.end') ends.get((payload as JobEnd).jobId)?.(payload as JobEnd);
  };
  const jobs = createJobManager({ pool, emit, specs, progressIntervalMs });
  const ended = (jobId: string) => new Promise<JobEnd>((resolve) => ends.set(jobId, resolve));
  const of = (jobId: string) => events.filter((entry) => (entry.payload as { jobId?: string }).jobId === jobId);
  /** Until the job reports progress from its thread: it runs (queued or still being keyed, a cancel would stop it before it started). */
  const running = (jobId: string) => vi.waitFor(() => expect(of(jobId).map((entry) => entry.event)).toContain('job.progress'), { timeout: 30_000, interval: 10 });
  return { jobs, events, ended, of, running };
}

describe('the job manager', () => {
  it('refuses an unknown kind and arguments that fail the kind schema, before queueing anything', () => {
    const { jobs, events } = harness();
    expect(() => jobs.start('test.nope', '/x', {})).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(() => jobs.start('test.sleep', '/x', { ms: 'long' })).toThrow(/Invalid arguments for test.sleep: ms/);
    expect(() => jobs.start('test.sleep', '/x', { ms: 1, extra: true })).toThrow(expect.objectContaining({ code: 'INVALID_REQUEST' }));
    expect(events).toEqual([]);
  });

  it('gives each job a unique id, throttled progress ending with the last, then one end with the result', async () => {
    const { jobs, ended, of } = harness(100);
    const jobId = jobs.start('test.progress', '/x', { steps: 40, stepMs: 10 });
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(jobs.start('test.sleep', '/x', { ms: 1 })).not.toBe(jobId);
    const end = await ended(jobId);
    expect(end).toEqual({ jobId, ok: true, result: { steps: 40 } });

    const progress = of(jobId).filter((entry) => entry.event === 'job.progress');
    expect(progress.length).toBeGreaterThanOrEqual(2);
    // Throttled: far fewer events than steps, however long a loaded machine made the 40 steps take.
    const span = (progress.at(-1)?.at ?? 0) - (progress[0]?.at ?? 0);
    expect(progress.length).toBeLessThan(40);
    expect(progress.length).toBeLessThanOrEqual(Math.floor(span / 90) + 2);
    // Every event is at least an interval after the one before, except the last, which is flushed before the end.
    for (let index = 1; index < progress.length - 1; index += 1) {
      expect(progress[index]!.at - progress[index - 1]!.at).toBeGreaterThanOrEqual(90);
    }
    expect(progress.at(-1)?.payload).toEqual({ jobId, stage: 'counting', done: 40, total: 40, unit: 'steps' } satisfies JobProgress);
    expect(of(jobId).at(-1)?.event).toBe('job.end');
  });

  it('lists the jobs started and not yet ended, with the title each was started with, for a window opened after them', async () => {
    const { jobs, ended } = harness();
    const first = jobs.start('test.sleep', '/disks/a', { ms: 200 }, 'Compact a');
    const second = jobs.start('test.sleep', '/disks/b', { ms: 10_000 });
    expect(jobs.list()).toEqual([
      { jobId: first, kind: 'test.sleep', path: '/disks/a', title: 'Compact a' },
      { jobId: second, kind: 'test.sleep', path: '/disks/b', title: null },
    ]);
    await ended(first);
    expect(jobs.list().map((job) => job.jobId)).toEqual([second]);
    jobs.cancel(second);
    await ended(second);
    expect(jobs.list()).toEqual([]);
  });

  it('ends a failed job with the engine error code', async () => {
    const { jobs, ended } = harness();
    const jobId = jobs.start('test.fail', '/x', { code: 'TRUNCATED', message: 'the header is cut short' });
    expect(await ended(jobId)).toEqual({ jobId, ok: false, error: { code: 'TRUNCATED', message: 'the header is cut short' } });
  });

  it('cancels a running job: it ends with CANCELLED, and a second cancel reports false', async () => {
    const { jobs, ended } = harness();
    const jobId = jobs.start('test.sleep', '/x', { ms: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(jobs.cancel(jobId)).toBe(true);
    expect(jobs.cancel(jobId)).toBe(false);
    expect(await ended(jobId)).toMatchObject({ jobId, ok: false, error: { code: 'CANCELLED' } });
    expect(jobs.cancel('no-such-job')).toBe(false);
  });

  it('never stops the thread of a change that no longer heeds a cancel: it finishes, and its end says so', async () => {
    const { jobs, ended, running } = harness();
    const jobId = jobs.start('test.stubborn', '/x', { ms: 900 });
    await running(jobId);
    expect(jobs.cancel(jobId)).toBe(true);
    // The pool's grace period is 300 ms: a read job would have been stopped by now.
    expect(await ended(jobId)).toEqual({ jobId, ok: true, result: { slept: 900 } });
  });

  it('settled() waits for every job to end, a change that finishes after cancelAll() included', async () => {
    const { jobs, events, running } = harness();
    const change = jobs.start('test.stubborn', '/x', { ms: 600 });
    const read = jobs.start('test.sleep', '/y', { ms: 10_000 });
    await running(change);
    jobs.cancelAll();
    await jobs.settled();
    const ends = events.filter((entry) => entry.event === 'job.end').map((entry) => entry.payload as JobEnd);
    expect(ends).toContainEqual({ jobId: change, ok: true, result: { slept: 600 } });
    expect(ends).toContainEqual(expect.objectContaining({ jobId: read, ok: false, error: expect.objectContaining({ code: 'CANCELLED' }) }));
  });

  it('cancels a job still waiting for its image without running it', async () => {
    const { jobs, ended, events } = harness();
    const writer = jobs.start('test.write', '/queued.qcow2', { ms: 400 });
    const reader = jobs.start('test.sleep', '/queued.qcow2', { ms: 1 });
    expect(jobs.cancel(reader)).toBe(true);
    expect(await ended(reader)).toMatchObject({ ok: false, error: { code: 'CANCELLED', message: expect.stringMatching(/waiting/) } });
    expect(await ended(writer)).toMatchObject({ ok: true });
    expect(events.filter((entry) => entry.event === 'image.changed')).toEqual([
      expect.objectContaining({ payload: { path: '/queued.qcow2' } }),
    ]);
  });

  it('runs a writer only after the readers before it, and readers after it only once it is done', async () => {
    const { jobs, ended } = harness();
    const finished: string[] = [];
    const track = (label: string, jobId: string) =>
      ended(jobId).then((end) => {
        expect(end.ok).toBe(true);
        finished.push(label);
      });
    // The first reader holds its image until the test opens the gate: the other image's job must end meanwhile, however slow the machine.
    const folder = mkdtempSync(join(tmpdir(), 'cowbell-jobs-'));
    const gate = join(folder, 'gate');
    try {
      const otherImage = jobs.start('test.sleep', '/other.qcow2', { ms: 10 });
      const done = Promise.all([
        track('read-1', jobs.start('test.gated', '/order.qcow2', { gate })),
        track('write', jobs.start('test.write', '/order.qcow2', { ms: 50 })),
        track('read-2', jobs.start('test.sleep', '/order.qcow2', { ms: 10 })),
        track('other-image', otherImage),
      ]);
      await vi.waitFor(() => expect(finished).toEqual(['other-image']), { timeout: 30_000, interval: 10 });
      writeFileSync(gate, '');
      await done;
      expect(finished).toEqual(['other-image', 'read-1', 'write', 'read-2']);
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });

  it('runs a job directly for a result, through the same validation', async () => {
    const { jobs, events } = harness();
    await expect(jobs.run('test.sleep', '/x', { ms: 1 })).resolves.toEqual({ slept: 1 });
    await expect(jobs.run('test.sleep', '/x', {})).rejects.toMatchObject({ code: 'INVALID_REQUEST' });
    expect(events).toEqual([]);
  });
});
