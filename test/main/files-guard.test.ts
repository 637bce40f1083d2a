/**
 * The app's restore keeps writers out of the current state while it copies (the concurrency audit:
 * a VM starting mid-copy tore it); listing and snapshots open as before, so browsing never holds a VM off.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { createFilesJobs } from '../../src/main/worker/files-jobs.ts';
import type { StateFiles } from '../../src/shared/qcow2/files/state-files.ts';
import type { SnapshotRef } from '../../src/shared/qcow2/image/image.ts';
import type { GuestReaderOptions } from '../../src/shared/qcow2/image/image-format.ts';
import { silentJob } from '../../src/shared/qcow2/job-context.ts';
import { tempDir } from '../helpers/qemu.ts';

const folder = tempDir();
afterAll(() => folder.cleanup());

describe('files jobs and the current state', () => {
  it('a restore of the current state opens it guarded; of a snapshot, and a listing, unguarded', async () => {
    const opened: { state: SnapshotRef; guard: boolean; refuseInUse?: unknown }[] = [];
    const stand: StateFiles = { volumes: [], list: async () => [], close: async () => {} } as unknown as StateFiles;
    const jobs = createFilesJobs(async (_path, state, options: GuestReaderOptions = {}) => {
      opened.push({ state, guard: options.guard === true, ...(options.refuseInUse === undefined ? {} : { refuseInUse: options.refuseInUse }) });
      return stand;
    });
    const target = folder.file('restored');
    await jobs['files.copyOut']('/disk.qcow2', { state: 'current', path: '/etc/hosts', target }, silentJob).catch(() => undefined);
    await jobs['files.copyOut']('/disk.qcow2', { state: '1', path: '/etc/hosts', target }, silentJob).catch(() => undefined);
    await jobs['files.list']('/disk.qcow2', { state: 'current', path: '/' }, silentJob);
    expect(opened).toEqual([
      // Refused while a program writes it, in words that offer no -U (the app has none): the regression audit found a restore going through.
      { state: 'current', guard: true, refuseInUse: 'changing' },
      { state: { id: '1' }, guard: false },
      { state: 'current', guard: false },
    ]);
  });
});
