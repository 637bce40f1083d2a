import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { createPool } from '../../src/main/pool.ts';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';
import type { ProgressMessage } from '../../src/main/worker/protocol.ts';

const workerFile = fileURLToPath(new URL('./fixtures/test-worker.ts', import.meta.url));
const pool = createPool({ workerFile, maxThreads: 2, cancelGraceMs: 300 });
afterAll(() => pool.close());

async function failure(promise: Promise<unknown>): Promise<Qcow2Error> {
  const error: unknown = await promise.then(
    () => expect.fail('the job should have failed'),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(Qcow2Error);
  return error as Qcow2Error;
}

describe('the worker pool', () => {
  it('runs a job in a worker and returns its result', async () => {
    await expect(pool.run('test.echo', '/x.qcow2', { a: 1 })).resolves.toEqual({ path: '/x.qcow2', args: { a: 1 } });
  });

  it('hands every worker it starts the same store of opened guest volume keys', async () => {
    // Two at once, each holding its thread a while: two threads (maxThreads 2), one buffer between them.
    const counts = await Promise.all([pool.run('test.volumeKeys', '/a', { ms: 300 }), pool.run('test.volumeKeys', '/b', { ms: 300 })]);
    expect(counts.map((result) => (result as { shared: boolean }).shared)).toEqual([true, true]);
    expect(counts.map((result) => (result as { count: number }).count).sort()).toEqual([1, 2]);
  });

  it('delivers progress through the port, the last one before the result', async () => {
    const seen: ProgressMessage[] = [];
    const result = await pool.run('test.progress', '/x', { steps: 20, stepMs: 5 }, { onProgress: (p) => seen.push(p) });
    expect(result).toEqual({ steps: 20 });
    expect(seen.length).toBeGreaterThan(1);
    expect(seen.length).toBeLessThan(20);
    expect(seen.at(-1)).toEqual({ stage: 'counting', done: 20, total: 20, unit: 'steps' });
  });

  it('carries a Qcow2Error across the thread boundary with its code and message', async () => {
    const error = await failure(pool.run('test.fail', '/x', { code: 'BAD_MAGIC', message: 'not a qcow2 image' }));
    expect(error.code).toBe('BAD_MAGIC');
    expect(error.message).toBe('not a qcow2 image');
  });

  it('turns any other thrown value into INTERNAL with its message', async () => {
    const error = await failure(pool.run('test.throwPlain', '/x', {}));
    expect(error.code).toBe('INTERNAL');
    expect(error.message).toContain('not a Qcow2Error');
  });

  it('reports a job kind the worker does not know as INTERNAL', async () => {
    const error = await failure(pool.run('test.nope', '/x', {}));
    expect(error.code).toBe('INTERNAL');
  });

  it('stops a job that polls its cancel flag, with CANCELLED', async () => {
    const controller = new AbortController();
    // Cancelled once it runs (a cancel before the thread takes the job is another path, below).
    const running = pool.run('test.sleep', '/x', { ms: 10_000 }, { signal: controller.signal, onProgress: () => controller.abort() });
    const error = await failure(running);
    // The job's own check of the flag stopped it: not the grace period's end, nor the refusal before it started.
    expect(error).toMatchObject({ code: 'CANCELLED', message: 'Cancelled; the image was left as it was' });
  });

  it('terminates the thread of a job that ignores cancel, after the grace period', async () => {
    const controller = new AbortController();
    const running = pool.run('test.stubborn', '/x', { ms: 10_000 }, { signal: controller.signal, onProgress: () => controller.abort() });
    const error = await failure(running);
    expect(error.code).toBe('CANCELLED');
    expect(error.message).toContain('stopped');
    await expect(pool.run('test.echo', '/x', 1)).resolves.toEqual({ path: '/x', args: 1 });
  });

  it('never terminates a job it may not (one changing a disk): it runs to its own end, and its result stands', async () => {
    const controller = new AbortController();
    const running = pool.run('test.stubborn', '/x', { ms: 900 }, { signal: controller.signal, mayTerminate: false, onProgress: () => controller.abort() });
    await expect(running).resolves.toEqual({ slept: 900 });
  });

  it('refuses a job whose signal is already aborted without running it', async () => {
    const error = await failure(pool.run('test.echo', '/x', {}, { signal: AbortSignal.abort() }));
    expect(error.code).toBe('CANCELLED');
  });

  it.each(['test.exit', 'test.uncaught'])('fails only the job whose worker crashed (%s), and recovers', async (kind) => {
    const neighbour = pool.run('test.sleep', '/y', { ms: 300 });
    const error = await failure(pool.run(kind, '/x', {}));
    expect(error.code).toBe('INTERNAL');
    expect(error.message).toMatch(/stopped unexpectedly/);
    await expect(neighbour).resolves.toEqual({ slept: 300 });
    await expect(pool.run('test.echo', '/x', 2)).resolves.toEqual({ path: '/x', args: 2 });
  });
});
