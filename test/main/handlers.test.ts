import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequestHandle, type HandlerSeam } from '../../src/main/handlers.ts';
import type { JobManager } from '../../src/main/jobs.ts';
import { completePath } from '../../src/main/path-complete.ts';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';

interface Call {
  method: string;
  args: unknown[];
}

function fakeJobs(calls: Call[]): JobManager {
  return {
    start: (...args) => (calls.push({ method: 'start', args }), 'job-1'),
    cancel: (...args) => (calls.push({ method: 'cancel', args }), true),
    run: async (...args) => {
      calls.push({ method: 'run', args });
      return { filename: args[1], format: 'qcow2' };
    },
    cancelAll: () => undefined,
    list: () => [],
    settled: () => Promise.resolve(),
  };
}

function setup(overrides: Partial<HandlerSeam> = {}) {
  const calls: Call[] = [];
  const handle = createRequestHandle({
    mode: 'browser',
    version: '9.9.9',
    jobs: fakeJobs(calls),
    initialPaths: () => ['/images/a.qcow2'],
    openDialog: async () => [],
    ...overrides,
  });
  return { handle, calls };
}

let folder = '';
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'cowbell-handlers-'));
  await mkdir(join(folder, 'vms'));
  await mkdir(join(folder, '.hidden'));
  await writeFile(join(folder, 'disk.qcow2'), 'not really');
  await writeFile(join(folder, 'disk.img'), '');
  await writeFile(join(folder, 'disguised.bin'), Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]));
  await writeFile(join(folder, 'notes.txt'), 'hello');
});
afterAll(() => rm(folder, { recursive: true, force: true }));

describe('request handlers', () => {
  it.each([
    ['an unknown request name', 'image.delete', {}],
    ['a name that is not a string', 42, {}],
    ['a name from the prototype', 'constructor', {}],
    ['a relative path', 'image.open', { path: 'disk.qcow2' }],
    ['a path with a NUL byte', 'image.open', { path: '/tmp/a\0b' }],
    // The engine's spelling of a byte that is not UTF-8: most file calls would turn it into U+FFFD, another file.
    ['a path with a lone surrogate', 'image.open', { path: '/tmp/caf\udce9.qcow2' }],
    ['an extra argument', 'image.open', { path: '/tmp/a', force: true }],
    ['missing arguments', 'image.open', undefined],
    ['arguments to an argument-less request', 'app.about', { verbose: true }],
    ['an unknown job kind', 'job.start', { kind: 'image.shred', path: '/tmp/a', args: {} }],
    ['an empty job id', 'job.cancel', { jobId: '' }],
    ['a prefix that is not a string', 'path.complete', { prefix: 7 }],
  ])('refuses %s with INVALID_REQUEST and does no work', async (_what, name, args) => {
    const { handle, calls } = setup();
    const reply = await handle(name, args);
    expect(reply).toEqual({ ok: false, error: { code: 'INVALID_REQUEST', message: expect.any(String) } });
    expect(calls).toEqual([]);
  });

  it('answers app.about with the mode and version of this run', async () => {
    const { handle } = setup();
    expect(await handle('app.about', {})).toEqual({
      ok: true,
      value: { name: 'Cowbell', version: '9.9.9', mode: 'browser', platform: process.platform },
    });
  });

  it('hands out the initial paths and the dialog choice', async () => {
    const { handle } = setup({ openDialog: async () => ['/chosen.qcow2'] });
    expect(await handle('app.initialPaths', {})).toEqual({ ok: true, value: ['/images/a.qcow2'] });
    expect(await handle('dialog.openImages', {})).toEqual({ ok: true, value: ['/chosen.qcow2'] });
  });

  it('opens an existing regular file by running an image.info job on it', async () => {
    const { handle, calls } = setup();
    const path = join(folder, 'disk.qcow2');
    expect(await handle('image.open', { path })).toEqual({ ok: true, value: { filename: path, format: 'qcow2' } });
    expect(calls).toEqual([{ method: 'run', args: ['image.info', path, {}] }]);
  });

  it('refuses to open a missing file or a folder with the engine codes, without a job', async () => {
    const { handle, calls } = setup();
    expect(await handle('image.open', { path: join(folder, 'gone.qcow2') })).toMatchObject({
      ok: false,
      error: { code: 'NOT_FOUND' },
    });
    expect(await handle('image.open', { path: join(folder, 'vms') })).toMatchObject({
      ok: false,
      error: { code: 'NOT_A_FILE' },
    });
    expect(calls).toEqual([]);
  });

  it('passes an engine error from the job through with its code', async () => {
    const { handle } = setup({
      jobs: {
        ...fakeJobs([]),
        run: async () => {
          throw new Qcow2Error('BAD_MAGIC', 'not a qcow2 image');
        },
      },
    });
    expect(await handle('image.open', { path: join(folder, 'notes.txt') })).toEqual({
      ok: false,
      error: { code: 'BAD_MAGIC', message: 'not a qcow2 image' },
    });
  });

  it('starts and cancels jobs through the job manager', async () => {
    const { handle, calls } = setup();
    const path = join(folder, 'disk.qcow2');
    expect(await handle('job.start', { kind: 'image.info', path, args: {} })).toEqual({
      ok: true,
      value: { jobId: 'job-1' },
    });
    expect(await handle('job.cancel', { jobId: 'job-1' })).toEqual({ ok: true, value: { cancelled: true } });
    expect(calls).toEqual([
      { method: 'start', args: ['image.info', path, {}] },
      { method: 'cancel', args: ['job-1'] },
    ]);
  });

  it('completes a prefix to folders and disk images, by extension or by qcow2 magic', async () => {
    const { handle } = setup();
    expect(await handle('path.complete', { prefix: `${folder}/` })).toEqual({
      ok: true,
      value: [
        { path: join(folder, 'vms'), kind: 'folder' },
        { path: join(folder, 'disguised.bin'), kind: 'image' },
        { path: join(folder, 'disk.img'), kind: 'image' },
        { path: join(folder, 'disk.qcow2'), kind: 'image' },
      ],
    });
    expect(await handle('path.complete', { prefix: join(folder, 'disk.q') })).toEqual({
      ok: true,
      value: [{ path: join(folder, 'disk.qcow2'), kind: 'image' }],
    });
    expect(await handle('path.complete', { prefix: join(folder, '.h') })).toEqual({
      ok: true,
      value: [{ path: join(folder, '.hidden'), kind: 'folder' }],
    });
  });

  it('completes ~ as the home folder, keeping what follows as typed (~/. lists hidden entries, not the home folder)', async () => {
    expect(await completePath('~/.', folder)).toEqual([{ path: join(folder, '.hidden'), kind: 'folder' }]);
    expect(await completePath('~/.h', folder)).toEqual([{ path: join(folder, '.hidden'), kind: 'folder' }]);
    expect(await completePath('~/di', `${folder}/`)).toEqual([
      { path: join(folder, 'disguised.bin'), kind: 'image' },
      { path: join(folder, 'disk.img'), kind: 'image' },
      { path: join(folder, 'disk.qcow2'), kind: 'image' },
    ]);
    expect((await completePath('~', folder)).map((entry) => entry.path)).toContain(join(folder, 'vms'));
  });

  it('completes nothing for a relative or unreadable prefix', async () => {
    const { handle } = setup();
    expect(await handle('path.complete', { prefix: 'relative/pa' })).toEqual({ ok: true, value: [] });
    expect(await handle('path.complete', { prefix: join(folder, 'missing', 'x') })).toEqual({ ok: true, value: [] });
  });
});
