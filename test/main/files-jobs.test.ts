/**
 * The files jobs (issue 22) as main takes them: the contract's arguments, the paths a restore may
 * write (a new name in an existing folder, never an existing file), and "Open Folder" showing only
 * what a restore wrote; then the jobs through the real worker pool on an ext4 guest in a qcow2.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRequestHandle, type HandlerSeam } from '../../src/main/handlers.ts';
import type { JobManager } from '../../src/main/jobs.ts';
import { jobSchemas, type FilesCopyOutResult, type GuestFilesDiff, type GuestFolderListing, type JobEnd } from '../../src/shared/ipc/contract.ts';
import { BEFORE_FILES, makeChangedExtDisk } from '../helpers/changed-ext-disk.ts';
import { createLuksImage, qemuIoEncrypted } from '../helpers/encrypted-images.ts';
import { fileHash } from '../helpers/image-locks.ts';
import { startBackend } from '../helpers/job-harness.ts';
import { runTool } from '../helpers/qemu.ts';

let folder = '';
let disk = '';
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'cowbell-files-jobs-'));
  disk = join(folder, 'disk.qcow2');
  await writeFile(disk, 'a disk');
  await writeFile(join(folder, 'taken'), 'mine');
});
afterAll(() => rm(folder, { recursive: true, force: true }));

function setup(overrides: Partial<HandlerSeam> = {}) {
  const started: unknown[][] = [];
  const jobs: JobManager = {
    start: (...args) => (started.push(args), `job-${started.length}`),
    cancel: () => true,
    run: async () => null,
    cancelAll: () => undefined,
    list: () => [],
    settled: () => Promise.resolve(),
  };
  const handle = createRequestHandle({ mode: 'browser', version: 'test', jobs, initialPaths: () => [], openDialog: async () => [], ...overrides });
  return { handle, started };
}

describe('the contract for the files jobs', () => {
  it('reads the disk only, and takes a path inside the state that starts with /', () => {
    expect([jobSchemas['files.list'].access, jobSchemas['files.diff'].access, jobSchemas['files.copyOut'].access]).toEqual(['read', 'read', 'read']);
    expect(jobSchemas['files.list'].args.safeParse({ state: 'current', path: '/1/etc' }).success).toBe(true);
    expect(jobSchemas['files.list'].args.safeParse({ state: '1', path: '/', passphrase: 'moo' }).success).toBe(true);
    for (const args of [{ state: 'current', path: 'etc' }, { state: 'current', path: '/a\0b' }, { state: '', path: '/' }, { state: 'current', path: '/', recursive: true }]) {
      expect(jobSchemas['files.list'].args.safeParse(args).success).toBe(false);
    }
    expect(jobSchemas['files.diff'].args.safeParse({ from: '1', to: 'current' }).success).toBe(true);
    expect(jobSchemas['files.diff'].args.safeParse({ from: '1' }).success).toBe(false);
    expect(jobSchemas['files.copyOut'].args.safeParse({ state: '1', path: '/etc/hostname', target: '/home/me/hostname' }).success).toBe(true);
    expect(jobSchemas['files.copyOut'].args.safeParse({ state: '1', path: '/etc/hostname', target: 'hostname' }).success).toBe(false);
    expect(jobSchemas['files.copyOut'].args.safeParse({ state: '1', path: '/etc/hostname', target: '/home/me/hostname', overwrite: true }).success).toBe(false);
  });
});

describe('files.copyOut targets', () => {
  it('are refused when something is already there, which stays as it was', async () => {
    const { handle, started } = setup();
    const reply = await handle('job.start', { kind: 'files.copyOut', path: disk, args: { state: 'current', path: '/etc/hostname', target: join(folder, 'taken') } });
    expect(reply).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(started).toEqual([]);
    expect(await readFile(join(folder, 'taken'), 'utf8')).toBe('mine');
  });

  it('are refused in a folder that does not exist', async () => {
    const { handle, started } = setup();
    const reply = await handle('job.start', { kind: 'files.copyOut', path: disk, args: { state: 'current', path: '/etc', target: join(folder, 'missing', 'etc') } });
    expect(reply).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    expect(started).toEqual([]);
  });

  it('start the job when the name is free in an existing folder', async () => {
    const { handle, started } = setup();
    const target = join(folder, 'hostname');
    expect(await handle('job.start', { kind: 'files.copyOut', path: disk, args: { state: 'current', path: '/etc/hostname', target } })).toEqual({ ok: true, value: { jobId: 'job-1' } });
    expect(started).toEqual([['files.copyOut', disk, { state: 'current', path: '/etc/hostname', target }]]);
  });
});

describe('path.reveal ("Open Folder")', () => {
  it('shows only a copy a restore was asked to write, and says when there is no file manager', async () => {
    const revealed: string[] = [];
    const electron = setup({ revealPath: (path) => revealed.push(path) });
    const target = join(folder, 'restored-note');
    expect(await electron.handle('path.reveal', { path: join(folder, 'taken') })).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    await electron.handle('job.start', { kind: 'files.copyOut', path: disk, args: { state: 'current', path: '/note', target } });
    await writeFile(target, 'what the job wrote');
    expect(await electron.handle('path.reveal', { path: target })).toEqual({ ok: true, value: { revealed: true } });
    expect(revealed).toEqual([target]);

    const browser = setup();
    await browser.handle('job.start', { kind: 'files.copyOut', path: disk, args: { state: 'current', path: '/note', target: join(folder, 'other') } });
    expect(await browser.handle('path.reveal', { path: join(folder, 'other') })).toEqual({ ok: true, value: { revealed: false } });
  });
});

function resultOf<T>(end: JobEnd): T {
  if (!end.ok) throw new Error(`the job failed: ${end.error.code} ${end.error.message}`);
  return end.result as T;
}

describe('the files jobs on an ext4 guest', () => {
  it('list a folder of a snapshot, compare two states, and restore a file, reading the disk only', async () => {
    const backend = startBackend({ maxThreads: 1 });
    try {
      const { path } = await makeChangedExtDisk(folder);
      const hashBefore = fileHash(path);
      // The app names a snapshot by its id (the tree's node ids): "before" is snapshot 1.
      const listing = resultOf<GuestFolderListing>(await backend.ended(await backend.start('files.list', path, { state: '1', path: '/home/me' })));
      expect(listing.volumes).toMatchObject([{ name: '', table: 'none', filesystem: 'ext', label: 'guestroot' }]);
      expect(listing.entries.map((entry) => [entry.name, entry.size]).sort()).toEqual([
        ['keep.txt', BEFORE_FILES['home/me/keep.txt']!.length],
        ['notes.txt', BEFORE_FILES['home/me/notes.txt']!.length],
      ]);

      const diffJob = await backend.start('files.diff', path, { from: '1', to: 'current' });
      const diff = resultOf<GuestFilesDiff>(await backend.ended(diffJob));
      expect(diff.differences.map((difference) => `${difference.change} ${difference.path}`)).toEqual([
        'added /etc/motd',
        'changed /home/me/keep.txt',
        'changed /home/me/notes.txt',
        'removed /old',
        'removed /old/gone.txt',
      ]);
      expect(backend.events.some((event) => event.event === 'job.progress' && (event.payload as { jobId: string }).jobId === diffJob)).toBe(true);

      const target = join(folder, 'notes-before.txt');
      const restored = resultOf<FilesCopyOutResult>(await backend.ended(await backend.start('files.copyOut', path, { state: '1', path: '/home/me/notes.txt', target })));
      expect(restored).toMatchObject({ target, kind: 'file', files: 1, bytes: BEFORE_FILES['home/me/notes.txt']!.length });
      expect(await readFile(target, 'utf8')).toBe(BEFORE_FILES['home/me/notes.txt']);
      expect(fileHash(path)).toBe(hashBefore);
    } finally {
      await backend.close();
    }
  });

  // Was: the app sent the snapshot's id and the engine looked it up as a name first, so a snapshot
  // named like another's id ("1", "2", as people number them) was browsed, compared and restored instead.
  it('a state is the snapshot with that id, even when another snapshot is named like it', async () => {
    const backend = startBackend({ maxThreads: 1 });
    try {
      const { path } = await makeChangedExtDisk(folder, 'numbered.qcow2');
      // Snapshot 1 ("before") holds the old files; snapshot 2, named "1", the changed ones.
      await runTool('qemu-img', ['snapshot', '-c', '1', path]);
      const names = async (id: string): Promise<string[]> => {
        const end = await backend.ended(await backend.start('files.list', path, { state: id, path: '/' }));
        return resultOf<GuestFolderListing>(end).entries.map((entry) => entry.name).sort();
      };
      expect(await names('1'), 'snapshot id 1: the old files').toContain('old');
      expect(await names('2'), 'snapshot id 2 (named "1"): the changed ones').not.toContain('old');
      const diff = resultOf<GuestFilesDiff>(await backend.ended(await backend.start('files.diff', path, { from: '1', to: '2' })));
      expect(diff.differences.map((difference) => `${difference.change} ${difference.path}`)).toContain('removed /old');
    } finally {
      await backend.close();
    }
  });

  it('answer a missing folder with NOT_FOUND and a file listed as a folder with NOT_A_DIRECTORY', async () => {
    const backend = startBackend({ maxThreads: 1 });
    try {
      const { path } = await makeChangedExtDisk(folder, 'errors.qcow2');
      const missing = await backend.ended(await backend.start('files.list', path, { state: 'current', path: '/nowhere' }));
      expect(missing).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
      const file = await backend.ended(await backend.start('files.list', path, { state: 'current', path: '/etc/hostname' }));
      expect(file).toMatchObject({ ok: false, error: { code: 'NOT_A_DIRECTORY' } });
    } finally {
      await backend.close();
    }
  });
});

describe('the files jobs on an encrypted disk', () => {
  it('answer LOCKED without the passphrase, BAD_PASSPHRASE with a wrong one, and list with the right one', async () => {
    const backend = startBackend({ maxThreads: 1 });
    try {
      const tree = join(folder, 'secret-tree');
      await mkdir(join(tree, 'etc'), { recursive: true });
      await writeFile(join(tree, 'etc', 'shadow'), 'root:*:19000::::::\n');
      const raw = join(folder, 'secret.raw');
      await runTool('mkfs.ext4', ['-q', '-F', '-d', tree, raw, '16M']);
      const path = join(folder, 'secret.qcow2');
      await createLuksImage(path, 'moo', { size: '16M' });
      await qemuIoEncrypted(path, 'moo', [`write -s ${raw} 0 16M`]);

      const locked = await backend.ended(await backend.start('files.list', path, { state: 'current', path: '/etc' }));
      expect(locked).toMatchObject({ ok: false, error: { code: 'LOCKED' } });
      const wrong = await backend.ended(await backend.start('files.list', path, { state: 'current', path: '/etc', passphrase: 'not moo' }));
      expect(wrong).toMatchObject({ ok: false, error: { code: 'BAD_PASSPHRASE' } });
      const listing = resultOf<GuestFolderListing>(await backend.ended(await backend.start('files.list', path, { state: 'current', path: '/etc', passphrase: 'moo' })));
      expect(listing.entries.map((entry) => [entry.name, entry.size])).toEqual([['shadow', 19]]);
      const diff = resultOf<GuestFilesDiff>(await backend.ended(await backend.start('files.diff', path, { from: 'current', to: 'current', passphrase: 'moo' })));
      expect(diff.differences).toEqual([]);
    } finally {
      await backend.close();
    }
  }, 60_000);
});
