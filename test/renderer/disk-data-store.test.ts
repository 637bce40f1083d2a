/**
 * Opening a disk: the tree shows as soon as its job ends, without waiting for the space report,
 * and the Space tab shows the space job's progress bar until its figures arrive.
 */
import { flushPromises, mount } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SnapshotTree, UsageReport } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import SpacePane from '../../src/renderer/src/components/space/SpacePane.vue';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { fakeConnection } from './fixtures.ts';

const PATH = '/disks/big.qcow2';
const TREE: SnapshotTree = {
  snapshots: [{ id: '1', name: 'before-upgrade', parentId: null, parentInferred: false, date: '2026-12-01T10:00:00.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 65536, sharedBytes: 1048576 }],
  currentParentId: '1',
  currentParentInferred: false,
  current: { exclusiveBytes: 131072, sharedBytes: 1048576 },
};
const USAGE: UsageReport = {
  virtualSize: 2 ** 40,
  fileSize: 2 ** 30,
  allocatedBytes: 2 ** 30,
  metadataBytes: 2 ** 20,
  leakedBytes: 0,
  current: { exclusiveBytes: 131072, sharedBytes: 1048576 },
  snapshots: [{ id: '1', name: 'before-upgrade', exclusiveBytes: 65536, sharedBytes: 1048576 }],
};

describe('reading a disk’s tree and space', () => {
  let fake: ReturnType<typeof fakeConnection>;
  const started = new Map<string, string>();

  beforeEach(() => {
    setActivePinia(createPinia());
    started.clear();
    fake = fakeConnection({
      'job.start': (args) => {
        const kind = (args as { kind: string }).kind;
        started.set(kind, `job-${kind}`);
        return { jobId: `job-${kind}` };
      },
    });
    replaceConnection(fake);
  });
  afterEach(() => replaceConnection(null));

  it('shows the tree when its job ends while the space job still runs, with that job’s progress in the Space tab', async () => {
    const data = useDiskDataStore();
    const loaded = data.load(PATH);
    await flushPromises();
    expect([...started.keys()].sort()).toEqual(['chain.read', 'image.usage', 'snapshot.outline', 'snapshot.tree']);
    // The charts draw on a canvas jsdom lacks: stubs stand in for them.
    const pane = mount(SpacePane, { props: { path: PATH }, global: { stubs: { SpaceSummaryChart: true, SnapshotSpaceChart: true } } });

    fake.emit('job.end', { jobId: 'job-snapshot.tree', ok: true, result: TREE });
    // The quick tree, late: the full one is in already.
    fake.emit('job.end', { jobId: 'job-snapshot.outline', ok: true, result: { ...TREE, current: { exclusiveBytes: null, sharedBytes: null } } });
    await flushPromises();
    expect(data.disks.get(PATH)).toMatchObject({ status: 'ready', tree: TREE, counting: false, usage: null });

    fake.emit('job.progress', { jobId: 'job-image.usage', stage: 'reading mapping tables', done: 3, total: 4, unit: 'steps' });
    await flushPromises();
    expect(pane.get('[data-testid="space-progress"]').attributes()).toMatchObject({ value: '3', max: '4' });
    expect(pane.get('[data-testid="space-progress-detail"]').text()).toBe('reading mapping tables · 75%');

    fake.emit('job.end', { jobId: 'job-image.usage', ok: true, result: USAGE });
    fake.emit('job.end', { jobId: 'job-chain.read', ok: false, error: { code: 'NOT_FOUND', message: 'no chain here' } });
    await loaded;
    await flushPromises();
    expect(data.disks.get(PATH)).toMatchObject({ status: 'ready', usage: USAGE, error: null });
    expect(pane.find('[data-testid="space-loading"]').exists()).toBe(false);
    expect(pane.findComponent({ name: 'SpaceSummaryChart' }).props('usage')).toEqual(USAGE);
    expect(useJobsStore().jobs).toEqual([]);
  });

  // Was: only the disk itself was watched, so a snapshot or resize another program made in its backing file left the Backing chain pane stale.
  it('watches the files below the disk in its chain, re-reads the disk when one changes, and stops watching them when the disk closes', async () => {
    const data = useDiskDataStore();
    const loaded = data.load(PATH);
    await flushPromises();
    const chain = {
      files: [
        { path: PATH, name: PATH, format: 'qcow2', declaredFormat: null, virtualSize: 1, fileSize: 1, allocatedBytes: 1, encrypted: false, snapshots: [], problem: null },
        { path: '/disks/base.qcow2', name: 'base.qcow2', format: 'qcow2', declaredFormat: 'qcow2', virtualSize: 1, fileSize: 1, allocatedBytes: 1, encrypted: false, snapshots: [], problem: null },
      ],
      complete: true,
    };
    fake.emit('job.end', { jobId: 'job-chain.read', ok: true, result: chain });
    fake.emit('job.end', { jobId: 'job-snapshot.tree', ok: true, result: TREE });
    fake.emit('job.end', { jobId: 'job-image.usage', ok: true, result: USAGE });
    await loaded;
    await flushPromises();
    expect(fake.calls.filter((call) => call.name === 'image.watch')).toEqual([{ name: 'image.watch', args: { path: '/disks/base.qcow2' } }]);

    started.clear();
    fake.emit('image.changed', { path: '/disks/base.qcow2' });
    await flushPromises();
    expect([...started.keys()].sort()).toEqual(['chain.read', 'image.usage', 'snapshot.outline', 'snapshot.tree']);

    data.forget(PATH);
    await flushPromises();
    expect(fake.calls.filter((call) => call.name === 'image.unwatch')).toEqual([{ name: 'image.unwatch', args: { path: '/disks/base.qcow2' } }]);
  });

  it('keeps the tree when the space report fails, and says why', async () => {
    const data = useDiskDataStore();
    const loaded = data.load(PATH);
    await flushPromises();
    fake.emit('job.end', { jobId: 'job-image.usage', ok: false, error: { code: 'CORRUPT', message: 'Refcount block 3 has an invalid offset' } });
    fake.emit('job.end', { jobId: 'job-snapshot.tree', ok: true, result: TREE });
    fake.emit('job.end', { jobId: 'job-chain.read', ok: false, error: { code: 'NOT_FOUND', message: 'no chain here' } });
    await loaded;
    expect(data.disks.get(PATH)).toMatchObject({ status: 'ready', tree: TREE, usage: null, error: { code: 'CORRUPT' } });
  });
});
