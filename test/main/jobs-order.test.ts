/**
 * Jobs join their image's queue in the order they were asked for, even when naming the image
 * takes longer for one request than for the next (realpath through symlinks, a slow disk).
 */
import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import type { JobPool } from '../../src/main/pool.ts';
import type * as ImageQueueModule from '../../src/main/image-queue.ts';

vi.mock('../../src/main/image-queue.ts', async (importOriginal) => {
  const actual = await importOriginal<typeof ImageQueueModule>();
  return {
    ...actual,
    // A path through a "slow" link takes 40 ms to resolve to the image it names.
    imageKey: async (path: string) => {
      if (path.includes('/slow-link/')) await new Promise((resolve) => setTimeout(resolve, 40));
      return path.replace('/slow-link/', '/');
    },
  };
});

const { createJobManager } = await import('../../src/main/jobs.ts');

describe('the order jobs run in', () => {
  it('is the order they were started in, not the order their paths resolved in', async () => {
    const ran: string[] = [];
    const pool: JobPool = {
      async run(kind, path) {
        ran.push(`${kind} ${path}`);
        return null;
      },
      close: async () => {},
    };
    const specs = {
      'test.write': { access: 'write' as const, args: z.object({}).strict() },
      'test.read': { access: 'read' as const, args: z.object({}).strict() },
    };
    const jobs = createJobManager({ pool, emit: () => {}, specs, progressIntervalMs: 0 });
    const done = Promise.all([
      jobs.run('test.write', '/images/slow-link/disk.qcow2', {}),
      jobs.run('test.read', '/images/disk.qcow2', {}),
      jobs.run('test.write', '/images/disk.qcow2', {}),
    ]);
    await done;
    expect(ran).toEqual(['test.write /images/slow-link/disk.qcow2', 'test.read /images/disk.qcow2', 'test.write /images/disk.qcow2']);
  });
});
