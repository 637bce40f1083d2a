/**
 * "Resize…" as the page asks for it: arguments checked against the contract, then the real request
 * handle, job manager, per-image queue, worker pool and engine, on disks qemu-img makes and judges.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobSchemas, type JobEnd, type ResizePreview, type ResizeResult } from '../../src/shared/ipc/contract.ts';
import { fileHash, holdWithQemuNbd } from '../helpers/image-locks.ts';
import { startBackend, type Backend } from '../helpers/job-harness.ts';
import { qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';
import { expectCheckClean } from '../helpers/snapshot-scenario.ts';

let folder: TempDir;
let counter = 0;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

async function disk(size: string): Promise<string> {
  const path = folder.file(`disk-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', path, size]);
  return path;
}

function errorOf(end: JobEnd): { code: string; message: string } {
  if (end.ok) throw new Error('the job succeeded');
  return end.error;
}

async function run<T>(backend: Backend, kind: string, path: string, args: unknown): Promise<T> {
  const end = await backend.ended(await backend.start(kind, path, args));
  if (!end.ok) throw new Error(`the job failed: ${end.error.code} ${end.error.message}`);
  return end.result as T;
}

describe('the contract for resize', () => {
  it('accepts what the dialog sends and refuses anything else', () => {
    const accepted: [keyof typeof jobSchemas, unknown][] = [
      ['image.resizePreview', { size: 1024 * 1024 }],
      ['image.resize', { size: 2 ** 40 }],
      ['image.resize', { size: 512, shrink: true }],
      ['image.resize', { size: 512, shrink: true, discardData: true }],
      ['image.resize', { size: 512, shrink: true, discardData: true, discardBytes: 65536 }],
      ['image.resize', { size: 4096, passphrase: 'moo' }],
    ];
    const refused: [keyof typeof jobSchemas, unknown][] = [
      ['image.resizePreview', {}],
      ['image.resize', { size: 1000 }],
      ['image.resize', { size: 0 }],
      ['image.resize', { size: -512 }],
      ['image.resize', { size: 2 ** 53 }],
      ['image.resize', { size: '1G' }],
      ['image.resize', { size: 512, discardData: true }],
      ['image.resize', { size: 512, shrink: true, discardBytes: 65536 }],
      ['image.resize', { size: 512, shrink: true, discardData: true, discardBytes: -1 }],
      ['image.resize', { size: 512, preallocation: 'full' }],
      ['image.resize', { size: 512, passphrase: '' }],
    ];
    for (const [kind, args] of accepted) expect(jobSchemas[kind].args.safeParse(args).success, `${kind} ${JSON.stringify(args)}`).toBe(true);
    for (const [kind, args] of refused) expect(jobSchemas[kind].args.safeParse(args).success, `${kind} ${JSON.stringify(args)}`).toBe(false);
    expect(jobSchemas['image.resize'].access).toBe('write');
    expect(jobSchemas['image.resizePreview'].access).toBe('read');
  });
});

describe('resize, through the queue and the pool', () => {
  let backend: Backend;
  beforeAll(() => {
    backend = startBackend({ maxThreads: 2 });
  });
  afterAll(() => backend.close());

  it('previews a shrink, refuses it over data with DATA_PAST_END, then discards on request; qemu-img agrees', async () => {
    const path = await disk('4M');
    await qemuIo(path, ['write -P 0x21 3M 128k']);
    await qemuImg(['snapshot', '-c', 'keep', path]);

    const preview = await run<ResizePreview>(backend, 'image.resizePreview', path, { size: 1024 * 1024 });
    expect(preview).toEqual({
      currentSize: 4 * 1024 * 1024,
      newSize: 1024 * 1024,
      direction: 'shrink',
      l1Grows: false,
      pastEnd: [
        { state: 'current', id: null, name: null, diskSize: 4 * 1024 * 1024, bytes: 128 * 1024, kept: false },
        { state: 'snapshot', id: '1', name: 'keep', diskSize: 4 * 1024 * 1024, bytes: 128 * 1024, kept: true },
      ],
    });

    const hash = fileHash(path);
    const refused = errorOf(await backend.ended(await backend.start('image.resize', path, { size: 1024 * 1024, shrink: true })));
    expect(refused.code).toBe('DATA_PAST_END');
    expect(fileHash(path)).toBe(hash);

    // A bound under what lies there (the dialog showed less: another program wrote since) is refused too.
    const overBound = errorOf(await backend.ended(await backend.start('image.resize', path, { size: 1024 * 1024, shrink: true, discardData: true, discardBytes: 64 * 1024 })));
    expect(overBound.code).toBe('DATA_PAST_END');
    expect(fileHash(path)).toBe(hash);

    const result = await run<ResizeResult>(backend, 'image.resize', path, { size: 1024 * 1024, shrink: true, discardData: true, discardBytes: 128 * 1024 });
    expect(result).toEqual({ previousSize: 4 * 1024 * 1024, newSize: 1024 * 1024, l1Grown: false, discardedBytes: 128 * 1024 });
    expect((await qemuInfo(path))['virtual-size']).toBe(1024 * 1024);
    await expectCheckClean(expect, path, 'shrunk through the pool');

    const grown = await run<ResizeResult>(backend, 'image.resize', path, { size: 8 * 1024 * 1024 });
    expect(grown).toMatchObject({ newSize: 8 * 1024 * 1024, l1Grown: true });
    await expectCheckClean(expect, path, 'grown through the pool');
  });

  it('refuses a job.start whose arguments the contract refuses, before anything runs', async () => {
    const path = await disk('1M');
    const reply = await backend.handle('job.start', { kind: 'image.resize', path, args: { size: 1000 } });
    expect(reply.ok).toBe(false);
    if (!reply.ok) expect(reply.error.code).toBe('INVALID_REQUEST');
  });

  it('fails with IN_USE while qemu-nbd serves the disk, and changes nothing', async () => {
    const path = await disk('1M');
    const holder = await holdWithQemuNbd(path, { socketDir: folder.path });
    try {
      const hash = fileHash(path);
      const end = await backend.ended(await backend.start('image.resize', path, { size: 2 * 1024 * 1024 }));
      expect(errorOf(end).code).toBe('IN_USE');
      expect(fileHash(path)).toBe(hash);
    } finally {
      await holder.release();
    }
  });
});
