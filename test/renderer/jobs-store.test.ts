import { flushPromises } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import { formatTimeLeft, ratePerSecond, secondsLeft, addSample } from '../../src/renderer/src/lib/job-rate.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { fakeConnection } from './fixtures.ts';

describe('the jobs store', () => {
  let nextId = 0;
  let fake: ReturnType<typeof fakeConnection>;

  beforeEach(() => {
    setActivePinia(createPinia());
    fake = fakeConnection({
      'job.start': () => ({ jobId: `job-${++nextId}` }),
      'job.cancel': () => ({ cancelled: true }),
    });
    replaceConnection(fake);
  });
  afterEach(() => replaceConnection(null));

  it('follows a job’s progress to its end and says what happened', async () => {
    const jobs = useJobsStore();
    const result = jobs.run('snapshot.create', '/disks/a.qcow2', { name: 'x' }, { title: 'Take “x”', describe: (created) => `Took “${created.name}”.` });
    await flushPromises();
    const id = jobs.jobs[0]?.id ?? '';
    fake.emit('job.progress', { jobId: id, stage: 'writing', done: 1, total: 4, unit: 'steps' });
    expect(jobs.jobs[0]).toMatchObject({ status: 'running', stage: 'writing', done: 1, total: 4 });
    fake.emit('job.end', { jobId: id, ok: true, result: { id: '3', name: 'x' } });
    await expect(result).resolves.toEqual({ id: '3', name: 'x' });
    expect(jobs.jobs[0]).toMatchObject({ status: 'done', outcome: 'Took “x”.', done: 4 });
  });

  it('announces each visible job’s end for a screen reader: failures urgent, the same words twice still a change, background reads never', async () => {
    const jobs = useJobsStore();
    const take = jobs.run('snapshot.create', '/disks/a.qcow2', { name: 'x' }, { title: 'Take “x”', describe: () => 'Took “x”.' });
    await flushPromises();
    fake.emit('job.end', { jobId: jobs.jobs[0]?.id ?? '', ok: true, result: { id: '3', name: 'x' } });
    await take;
    expect(jobs.announcement).toMatchObject({ text: 'Take “x”: Took “x”.', urgent: false });
    const first = jobs.announcement?.serial ?? 0;

    const failing = jobs.run('snapshot.create', '/disks/a.qcow2', { name: 'y' }, { title: 'Take “y”' });
    await flushPromises();
    fake.emit('job.end', { jobId: jobs.jobs[1]?.id ?? '', ok: false, error: { code: 'READ_ONLY', message: 'The disk is read-only.' } });
    await expect(failing).rejects.toMatchObject({ code: 'READ_ONLY' });
    expect(jobs.announcement).toMatchObject({ text: 'Take “y” failed: The disk is read-only.', urgent: true });
    expect(jobs.announcement?.serial).toBe(first + 1);

    const background = jobs.run('snapshot.tree', '/disks/a.qcow2', {}, { title: 'tree', background: true });
    await flushPromises();
    fake.emit('job.end', { jobId: jobs.jobs.at(-1)?.id ?? '', ok: true, result: {} });
    await background;
    expect(jobs.announcement?.serial).toBe(first + 1);

    // Refused before it started: announced too.
    replaceConnection(fakeConnection({ 'job.start': () => Promise.reject(Object.assign(new Error('busy'), { code: 'BUSY' })) }));
    await expect(jobs.run('snapshot.create', '/disks/a.qcow2', { name: 'z' }, { title: 'Take “z”' })).rejects.toBeDefined();
    expect(jobs.announcement).toMatchObject({ urgent: true, serial: first + 2 });
    expect(jobs.announcement?.text).toMatch(/^Take “z” failed: /);
  });

  it('keeps an end that arrives before the reply to job.start', async () => {
    const jobs = useJobsStore();
    jobs.listen();
    fake.emit('job.end', { jobId: `job-${nextId + 1}`, ok: false, error: { code: 'SNAPSHOT_EXISTS', message: 'x exists' } });
    await expect(jobs.run('snapshot.create', '/disks/a.qcow2', { name: 'x' }, { title: 'Take “x”' })).rejects.toMatchObject({ code: 'SNAPSHOT_EXISTS' });
    expect(jobs.jobs[0]).toMatchObject({ status: 'failed', error: { code: 'SNAPSHOT_EXISTS' } });
    expect(jobs.panelOpen).toBe(true);
  });

  it('sends the title with a job, and a window opened (or reloaded) mid-job lists main’s titled jobs, follows them to their end and can cancel them', async () => {
    const jobs = useJobsStore();
    void jobs.run('image.compact', '/disks/a.qcow2', {}, { title: 'Compact a.qcow2' });
    await flushPromises();
    expect(fake.calls.find((call) => call.name === 'job.start')?.args).toMatchObject({ title: 'Compact a.qcow2' });

    setActivePinia(createPinia());
    replaceConnection(
      (fake = fakeConnection({
        'job.list': () => [
          { jobId: 'running-1', kind: 'image.compact', path: '/disks/a.qcow2', title: 'Compact a.qcow2' },
          { jobId: 'tree-1', kind: 'snapshot.tree', path: '/disks/a.qcow2', title: null },
        ],
        'job.cancel': () => ({ cancelled: true }),
      })),
    );
    const reloaded = useJobsStore();
    await reloaded.adoptRunning();
    expect(reloaded.visible.map((job) => [job.id, job.title, job.status])).toEqual([['running-1', 'Compact a.qcow2', 'running']]);
    expect(reloaded.busyWriting('/disks/a.qcow2')).toBe(true);
    fake.emit('job.progress', { jobId: 'running-1', stage: 'copying', done: 5, total: 10, unit: 'bytes' });
    expect(reloaded.jobs[0]).toMatchObject({ done: 5, total: 10 });
    await reloaded.cancel('running-1');
    expect(fake.calls.at(-1)).toEqual({ name: 'job.cancel', args: { jobId: 'running-1' } });
    fake.emit('job.end', { jobId: 'running-1', ok: true, result: {} });
    expect(reloaded.jobs[0]).toMatchObject({ status: 'done', outcome: 'Done.' });
  });

  it('asks main to cancel, and shows a cancelled job as such', async () => {
    const jobs = useJobsStore();
    const result = jobs.run('image.check', '/disks/a.qcow2', {}, { title: 'Check' });
    await flushPromises();
    const id = jobs.jobs[0]?.id ?? '';
    await jobs.cancel(id);
    expect(fake.calls.at(-1)).toEqual({ name: 'job.cancel', args: { jobId: id } });
    expect(jobs.jobs[0]?.cancelling).toBe(true);
    fake.emit('job.end', { jobId: id, ok: false, error: { code: 'CANCELLED', message: 'cancelled' } });
    await expect(result).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(jobs.jobs[0]).toMatchObject({ status: 'cancelled', outcome: 'Cancelled; the disk is as it was.' });
  });

  it('keeps background reads out of the panel', async () => {
    const jobs = useJobsStore();
    const result = jobs.run('snapshot.tree', '/disks/a.qcow2', {}, { title: 'Read', background: true });
    await flushPromises();
    expect(jobs.visible).toEqual([]);
    fake.emit('job.end', { jobId: jobs.jobs[0]?.id ?? '', ok: true, result: null });
    await result;
    expect(jobs.jobs).toEqual([]);
  });
});

describe('rate and time left for jobs that move bytes', () => {
  it('measures bytes per second over the recent samples and says how long is left', () => {
    let samples = addSample([], { at: 0, done: 0 });
    expect(ratePerSecond(samples)).toBeNull();
    samples = addSample(samples, { at: 1000, done: 50 * 1024 * 1024 });
    samples = addSample(samples, { at: 2000, done: 100 * 1024 * 1024 });
    expect(ratePerSecond(samples)).toBe(50 * 1024 * 1024);
    expect(secondsLeft(100 * 1024 * 1024, 400 * 1024 * 1024, ratePerSecond(samples))).toBe(6);
    samples = addSample(samples, { at: 8000, done: 130 * 1024 * 1024 });
    expect(samples.map((sample) => sample.at)).toEqual([8000]);
    expect(formatTimeLeft(6)).toBe('6 s left');
    expect(formatTimeLeft(75)).toBe('1 min 15 s left');
    expect(formatTimeLeft(3720)).toBe('1 h 2 min left');
    expect(formatTimeLeft(null)).toBe('');
  });
});
