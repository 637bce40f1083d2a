/**
 * Image locks through the app's own machinery: the UI's open and write jobs against an image
 * qemu-nbd serves, and two Cowbell processes (a worker of the app, bin/cowbell) on one image.
 */
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { jobSchemas, type JobEnd } from '../../src/shared/ipc/contract.ts';
import type { ImageInfo } from '../../src/shared/qcow2/model.ts';
import { fileHash, holdWithQemuNbd } from '../helpers/image-locks.ts';
import { processHasOpen, runCowbell, startBackend, type Backend } from '../helpers/job-harness.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

const IN_USE_MESSAGE = 'The disk is in use by another program (a running VM or qemu-nbd); close it first';
const BUSY_MESSAGE = 'The disk is busy in another Cowbell window or command; try again when it has finished';

let folder: TempDir;
let counter = 0;
let backend: Backend;
beforeAll(() => {
  folder = tempDir();
  backend = startBackend({
    workerFile: fileURLToPath(new URL('./fixtures/engine-worker.ts', import.meta.url)),
    maxThreads: 2,
    specs: { ...jobSchemas, 'test.holdForWrite': { access: 'write', args: z.object({ ms: z.number(), snapshot: z.string() }).strict() } },
  });
});
afterAll(async () => {
  await backend.close();
  folder.cleanup();
});

async function newImage(): Promise<string> {
  const image = folder.file(`disk-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
  await qemuIo(image, ['write -P 0x11 0 64k']);
  return image;
}

/** Resolves once the job has reported `stage` (the worker holds the image from then on). */
function reached(jobId: string, stage: string): Promise<void> {
  return new Promise((resolve) => {
    const poll = (): void => {
      const seen = backend.events.some((entry) => entry.event === 'job.progress' && (entry.payload as { jobId: string; stage: string }).jobId === jobId && (entry.payload as { stage: string }).stage === stage);
      if (seen) resolve();
      else setTimeout(poll, 10);
    };
    poll();
  });
}

async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setTimeout(resolve, 5));
}

function errorOf(end: JobEnd): { code: string; message: string } | null {
  return end.ok ? null : end.error;
}

describe('the UI while qemu-nbd serves the image', () => {
  it('opens it read-only with the reason; its write jobs fail with IN_USE and change nothing', async () => {
    const image = await newImage();
    const before = fileHash(image);
    const holder = await holdWithQemuNbd(image, { socketDir: folder.path });
    try {
      const opened = await backend.handle('image.open', { path: image });
      expect(opened.ok).toBe(true);
      expect((opened as { value: ImageInfo }).value['read-only-reason']).toBe('in use by another program');
      for (const [kind, args] of [
        ['snapshot.create', { name: 'refused' }],
        ['image.repair', { mode: 'leaks' }],
      ] as const) {
        const end = await backend.ended(await backend.start(kind, image, args));
        expect(errorOf(end), kind).toEqual({ code: 'IN_USE', message: IN_USE_MESSAGE });
      }
      const tree = await backend.ended(await backend.start('snapshot.tree', image, {}));
      expect(tree.ok).toBe(true);
      expect(fileHash(image)).toBe(before);
    } finally {
      await holder.release();
    }
    const after = await backend.ended(await backend.start('snapshot.create', image, { name: 'after' }));
    expect(after).toMatchObject({ ok: true, result: { name: 'after' } });
  }, 60_000);
});

describe('two Cowbell processes on one image', () => {
  it('bin/cowbell waits while a worker of the app writes, then takes its turn', async () => {
    const image = await newImage();
    const hold = await backend.start('test.holdForWrite', image, { ms: 60_000, snapshot: 'held' });
    await reached(hold, 'holding');
    let cliPid = 0;
    const cli = runCowbell(['snapshot', 'create', image, 'from-cli'], (pid) => (cliPid = pid));
    // Once the command has the file open it is waiting for its turn: only then does the worker let go.
    await until(() => cliPid !== 0 && processHasOpen(cliPid, image));
    const waitingSince = fileHash(image);
    backend.jobs.cancel(hold);
    expect(errorOf(await backend.ended(hold))?.code).toBe('CANCELLED');
    expect(fileHash(image)).toBe(waitingSince);
    const run = await cli;
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => [snapshot.id, snapshot.name])).toEqual([
      ['1', 'held'],
      ['2', 'from-cli'],
    ]);
    expect((await qemuCheck(image)).code).toBe(0);
  }, 60_000);

  it('bin/cowbell gives up with IN_USE when the worker keeps writing past its wait, and changes nothing', async () => {
    const image = await newImage();
    const hold = await backend.start('test.holdForWrite', image, { ms: 60_000, snapshot: 'held' });
    await reached(hold, 'holding');
    const during = fileHash(image);
    const [create, info] = await Promise.all([runCowbell(['snapshot', 'create', image, 'from-cli']), runCowbell(['info', image])]);
    expect({ code: create.code, stderr: create.stderr }).toEqual({ code: 1, stderr: `cowbell: ${BUSY_MESSAGE}\n` });
    expect({ code: info.code, stderr: info.stderr }).toEqual({ code: 1, stderr: `cowbell: ${BUSY_MESSAGE}\n` });
    expect(fileHash(image)).toBe(during);
    expect(backend.jobs.cancel(hold)).toBe(true);
    expect(errorOf(await backend.ended(hold))?.code).toBe('CANCELLED');
    const again = await runCowbell(['snapshot', 'create', image, 'from-cli']);
    expect(again.code).toBe(0);
    expect((await qemuInfo(image)).snapshots?.map((snapshot) => snapshot.name)).toEqual(['held', 'from-cli']);
  }, 60_000);
});
