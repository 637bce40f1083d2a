import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequestHandle } from '../../src/main/handlers.ts';
import type { JobManager } from '../../src/main/jobs.ts';
import {
  JOB_PATHS,
  requireExistingFile,
  requireJobPaths,
  requireNewFile,
  requireWellFormedPath,
} from '../../src/main/request-paths.ts';
import { jobSchemas } from '../../src/shared/ipc/contract.ts';

let folder = '';
let file = '';
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'cowbell-'));
  file = join(folder, 'disk.qcow2');
  await writeFile(file, 'bytes');
  await mkdir(join(folder, 'sub'));
  await symlink(file, join(folder, 'link.qcow2'));
  await symlink(join(folder, 'nowhere'), join(folder, 'dangling.qcow2'));
});
afterAll(() => rm(folder, { recursive: true, force: true }));

/** The error a promise or call rejects with, as the page would see its code. */
async function codeOf(run: () => unknown): Promise<string> {
  try {
    await run();
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  return 'accepted';
}

describe('paths from the page', () => {
  it.each([
    ['an empty string', ''],
    ['a relative path', 'vm/disk.qcow2'],
    ['a NUL byte', '/tmp/disk\0.qcow2'],
    ['a path longer than 4096 characters', `/${'a'.repeat(4096)}`],
    ['something other than a string', 42],
  ])('refuses %s before touching the file system (INVALID_REQUEST)', async (_what, path) => {
    expect(await codeOf(() => requireWellFormedPath(path))).toBe('INVALID_REQUEST');
    expect(await codeOf(() => requireExistingFile(path))).toBe('INVALID_REQUEST');
    expect(await codeOf(() => requireNewFile(path))).toBe('INVALID_REQUEST');
  });

  it('takes an existing regular file, or a link to one, for an existing image', async () => {
    expect(await requireExistingFile(file)).toBe(file);
    expect(await requireExistingFile(join(folder, 'link.qcow2'))).toBe(join(folder, 'link.qcow2'));
  });

  it('refuses a missing file, a folder, a device and a dangling link for an existing image', async () => {
    expect(await codeOf(() => requireExistingFile(join(folder, 'gone.qcow2')))).toBe('NOT_FOUND');
    expect(await codeOf(() => requireExistingFile(join(folder, 'sub')))).toBe('NOT_A_FILE');
    expect(await codeOf(() => requireExistingFile('/dev/null'))).toBe('NOT_A_FILE');
    expect(await codeOf(() => requireExistingFile(join(folder, 'dangling.qcow2')))).toBe('NOT_FOUND');
  });

  it('takes a new file only in an existing folder, and never over anything that exists', async () => {
    expect(await requireNewFile(join(folder, 'new.qcow2'))).toBe(join(folder, 'new.qcow2'));
    expect(await requireNewFile(join(folder, 'sub', 'new.qcow2'))).toBe(join(folder, 'sub', 'new.qcow2'));
    expect(await codeOf(() => requireNewFile(file))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => requireNewFile(join(folder, 'sub')))).toBe('INVALID_ARGUMENT');
    // A dangling link would make create write wherever it points.
    expect(await codeOf(() => requireNewFile(join(folder, 'dangling.qcow2')))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => requireNewFile(join(folder, 'no-folder', 'new.qcow2')))).toBe('NOT_FOUND');
    expect(await codeOf(() => requireNewFile(join(file, 'new.qcow2')))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => requireNewFile(`${folder}/sub/`))).toBe('INVALID_REQUEST');
    expect(await codeOf(() => requireNewFile('/'))).toBe('INVALID_REQUEST');
    // The file system's own limit is a mistake in the request, said in words, not an internal error.
    expect(await codeOf(() => requireNewFile(join(folder, `${'x'.repeat(300)}.qcow2`)))).toBe('INVALID_ARGUMENT');
  });

  it('decides the paths of every job kind of the contract', () => {
    expect(Object.keys(JOB_PATHS).sort()).toEqual(Object.keys(jobSchemas).sort());
    expect(JOB_PATHS['image.create'].target).toBe('new-file');
    expect(JOB_PATHS['snapshot.export']).toEqual({ target: 'existing-file', newFileArguments: ['target'] });
  });

  it('checks a job’s target by its kind and the files its arguments name', async () => {
    expect(await codeOf(() => requireJobPaths('snapshot.create', file, { name: 'a' }))).toBe('accepted');
    expect(await codeOf(() => requireJobPaths('snapshot.create', join(folder, 'gone.qcow2'), { name: 'a' }))).toBe('NOT_FOUND');
    expect(await codeOf(() => requireJobPaths('image.create', file, { size: 1 }))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => requireJobPaths('image.create', join(folder, 'new.qcow2'), { size: 1 }))).toBe('accepted');
    expect(await codeOf(() => requireJobPaths('image.create', join(folder, 'new.qcow2'), { backingFile: file }))).toBe('accepted');
    expect(
      await codeOf(() => requireJobPaths('image.create', join(folder, 'new.qcow2'), { backingFile: join(folder, 'gone.qcow2') })),
    ).toBe('BACKING_NOT_FOUND');
    expect(await codeOf(() => requireJobPaths('image.create', join(folder, 'new.qcow2'), { backingFile: join(folder, 'sub') }))).toBe(
      'NOT_A_FILE',
    );
    // Save as: the job reads the disk at its path and makes the file its `target` names, a new one.
    const exportArgs = (target: unknown) => ({ name: 'a', target, format: 'qcow2' });
    expect(await codeOf(() => requireJobPaths('snapshot.export', file, exportArgs(join(folder, 'new.qcow2'))))).toBe('accepted');
    expect(await codeOf(() => requireJobPaths('snapshot.export', join(folder, 'gone.qcow2'), exportArgs(join(folder, 'new.qcow2'))))).toBe('NOT_FOUND');
    expect(await codeOf(() => requireJobPaths('snapshot.export', file, exportArgs(file)))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => requireJobPaths('snapshot.export', file, exportArgs(join(folder, 'dangling.qcow2'))))).toBe('INVALID_ARGUMENT');
    expect(await codeOf(() => requireJobPaths('snapshot.export', file, exportArgs(join(folder, 'no-folder', 'new.qcow2'))))).toBe('NOT_FOUND');
    expect(await codeOf(() => requireJobPaths('snapshot.export', file, exportArgs('new.qcow2')))).toBe('INVALID_REQUEST');
    expect(await codeOf(() => requireJobPaths('snapshot.export', file, exportArgs(7)))).toBe('INVALID_REQUEST');
    expect(await codeOf(() => requireJobPaths('image.compress', join(folder, 'sub'), {}))).toBe('NOT_A_FILE');
    expect(await codeOf(() => requireJobPaths('image.compact', join(folder, 'gone.qcow2'), {}))).toBe('NOT_FOUND');
    expect(await codeOf(() => requireJobPaths('image.shred', file, {}))).toBe('INVALID_REQUEST');
    expect(await codeOf(() => requireJobPaths('constructor', file, {}))).toBe('INVALID_REQUEST');
  });
});

describe('the request handlers use them for every path', () => {
  function handler(started: unknown[][], watched: string[]) {
    const jobs: JobManager = {
      start: (...args) => (started.push(args), 'job-1'),
      cancel: () => false,
      run: async () => ({}),
      cancelAll: () => undefined,
    list: () => [],
      settled: () => Promise.resolve(),
    };
    return createRequestHandle({
      mode: 'browser',
      version: '0',
      jobs,
      initialPaths: () => [],
      openDialog: async () => [],
      watcher: { watch: (path) => watched.push(path), unwatch: () => undefined, close: () => undefined },
    });
  }

  it('starts no job on a path that fails its kind’s check', async () => {
    const started: unknown[][] = [];
    const handle = handler(started, []);
    const refused = [
      { kind: 'image.check', path: join(folder, 'sub'), args: {} },
      { kind: 'snapshot.delete', path: join(folder, 'gone.qcow2'), args: { name: 'a' } },
      { kind: 'image.create', path: file, args: { size: 1 } },
      { kind: 'image.create', path: join(folder, 'new.qcow2'), args: { backingFile: join(folder, 'gone.qcow2') } },
      { kind: 'snapshot.export', path: file, args: { name: 'a', target: file, format: 'raw' } },
      { kind: 'image.compress', path: join(folder, 'gone.qcow2'), args: {} },
    ];
    for (const request of refused) expect(await handle('job.start', request)).toMatchObject({ ok: false });
    expect(started).toEqual([]);
    expect(await handle('job.start', { kind: 'image.create', path: join(folder, 'new.qcow2'), args: { size: 1 } })).toEqual({
      ok: true,
      value: { jobId: 'job-1' },
    });
    expect(started).toEqual([['image.create', join(folder, 'new.qcow2'), { size: 1 }]]);
  });

  it('hands jobs to the manager in the order the requests came, though their checks take different times', async () => {
    const started: unknown[][] = [];
    const handle = handler(started, []);
    const requests = Array.from({ length: 30 }, (_, index) =>
      index % 3 === 0
        ? { kind: 'image.create', path: join(folder, 'sub', `new-${index}.qcow2`), args: { size: 1, backingFile: file } }
        : { kind: 'snapshot.create', path: join(folder, 'link.qcow2'), args: { name: `s${index}` } },
    );
    const replies = await Promise.all(requests.map((request) => handle('job.start', request)));
    expect(replies.every((reply) => reply.ok)).toBe(true);
    expect(started.map(([kind, path]) => `${String(kind)} ${String(path)}`)).toEqual(
      requests.map((request) => `${request.kind} ${request.path}`),
    );
  });

  it('watches only existing files, and completes no prefix holding a NUL', async () => {
    const watched: string[] = [];
    const handle = handler([], watched);
    expect(await handle('image.watch', { path: join(folder, 'sub') })).toMatchObject({ ok: false, error: { code: 'NOT_A_FILE' } });
    expect(await handle('image.watch', { path: file })).toEqual({ ok: true, value: null });
    expect(watched).toEqual([file]);
    expect(await handle('path.complete', { prefix: `${folder}/\0` })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
  });
});
