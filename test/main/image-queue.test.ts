import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImageQueue, imageKey, type Access, type Release } from '../../src/main/image-queue.ts';

/** Acquires in order and records when each grant happens. */
function recorder(queue: ImageQueue, key = '/disk.qcow2') {
  const granted: string[] = [];
  const releases = new Map<string, Release>();
  const request = (label: string, access: Access, signal?: AbortSignal) =>
    queue.acquire(key, access, signal).then((release) => {
      granted.push(label);
      releases.set(label, release);
    });
  const release = (label: string) => releases.get(label)?.();
  return { granted, request, release };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the per-image queue', () => {
  it('lets readers share an image', async () => {
    const queue = new ImageQueue();
    const { granted, request } = recorder(queue);
    void request('r1', 'read');
    void request('r2', 'read');
    void request('r3', 'read');
    await settle();
    expect(granted).toEqual(['r1', 'r2', 'r3']);
    expect(queue.status('/disk.qcow2').readers).toBe(3);
  });

  it('gives a writer the image alone, after the readers that came before it', async () => {
    const queue = new ImageQueue();
    const { granted, request, release } = recorder(queue);
    void request('r1', 'read');
    void request('w1', 'write');
    await settle();
    expect(granted).toEqual(['r1']);
    release('r1');
    await settle();
    expect(granted).toEqual(['r1', 'w1']);
  });

  it('makes readers that come after a waiting writer wait for it (strict FIFO)', async () => {
    const queue = new ImageQueue();
    const { granted, request, release } = recorder(queue);
    void request('r1', 'read');
    void request('w1', 'write');
    void request('r2', 'read');
    void request('r3', 'read');
    void request('w2', 'write');
    await settle();
    expect(granted).toEqual(['r1']);
    release('r1');
    await settle();
    expect(granted).toEqual(['r1', 'w1']);
    release('w1');
    await settle();
    expect(granted).toEqual(['r1', 'w1', 'r2', 'r3']);
    release('r2');
    await settle();
    expect(granted).toEqual(['r1', 'w1', 'r2', 'r3']);
    release('r3');
    await settle();
    expect(granted).toEqual(['r1', 'w1', 'r2', 'r3', 'w2']);
    expect(queue.status('/disk.qcow2')).toEqual({ readers: 0, writer: true, waiting: [] });
  });

  it('keeps different images independent', async () => {
    const queue = new ImageQueue();
    const a = recorder(queue, '/a.qcow2');
    const b = recorder(queue, '/b.qcow2');
    void a.request('wa', 'write');
    void b.request('wb', 'write');
    void a.request('ra', 'read');
    await settle();
    expect(a.granted).toEqual(['wa']);
    expect(b.granted).toEqual(['wb']);
  });

  it('drops a waiter whose signal aborts, and unblocks those behind it', async () => {
    const queue = new ImageQueue();
    const { granted, request } = recorder(queue);
    const controller = new AbortController();
    void request('r1', 'read');
    const writer = request('w1', 'write', controller.signal);
    void request('r2', 'read');
    await settle();
    expect(granted).toEqual(['r1']);
    controller.abort();
    await expect(writer).rejects.toMatchObject({ code: 'CANCELLED' });
    await settle();
    expect(granted).toEqual(['r1', 'r2']);
  });

  it('ignores a second release of the same grant', async () => {
    const queue = new ImageQueue();
    const { granted, request, release } = recorder(queue);
    void request('r1', 'read');
    void request('r2', 'read');
    void request('w1', 'write');
    await settle();
    release('r1');
    release('r1');
    await settle();
    expect(granted).toEqual(['r1', 'r2']);
  });

  it('keys an image by its real path, so two names of one file share a queue', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'cowbell-queue-'));
    try {
      await writeFile(join(folder, 'disk.qcow2'), '');
      await symlink(join(folder, 'disk.qcow2'), join(folder, 'alias.qcow2'));
      expect(await imageKey(join(folder, 'alias.qcow2'))).toBe(await imageKey(join(folder, 'disk.qcow2')));
      expect(await imageKey(join(folder, 'new.qcow2'))).toMatch(/new\.qcow2$/);
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
