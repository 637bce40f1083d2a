/**
 * Opening a disk: the quick tree (snapshot table alone) is drawn at once, each space figure saying
 * "counting…", and the full tree then fills the figures in where they are — same nodes, same
 * places, the tree not replaced. A re-read keeps the last figures while they are recounted; a full
 * tree that cannot be read leaves "not counted", never a stale figure shown as current.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SnapshotTree } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import SnapshotsPane from '../../src/renderer/src/components/tree/SnapshotsPane.vue';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { fakeConnection } from './fixtures.ts';

const PATH = '/disks/big.qcow2';
const MiB = 1024 * 1024;

const FULL: SnapshotTree = {
  snapshots: [
    { id: '1', name: 'fresh install', parentId: null, parentInferred: false, date: '2026-11-25T12:00:00.000Z', vmClock: 0, vmStateSize: 0, diskSize: 2 ** 40, exclusiveBytes: 64 * 1024, sharedBytes: MiB },
    {
      id: '2',
      name: 'before upgrade',
      parentId: '1',
      parentInferred: true,
      parentReason: 'closest older snapshot: "fresh install" (3 clusters differ)',
      date: '2026-11-26T12:00:00.000Z',
      vmClock: 0,
      vmStateSize: 0,
      diskSize: 2 ** 40,
      exclusiveBytes: 3 * MiB,
      sharedBytes: MiB,
    },
  ],
  currentParentId: '2',
  currentParentInferred: false,
  current: { exclusiveBytes: 2 * MiB, sharedBytes: MiB },
};

/** What the quick job gives for the same disk: no figures; the parents only the pass can tell are pending placeholders. */
function quickOf(tree: SnapshotTree): SnapshotTree {
  return {
    ...tree,
    currentParentPending: true,
    current: { exclusiveBytes: null, sharedBytes: null },
    snapshots: tree.snapshots.map((node) =>
      node.parentInferred
        ? { ...node, exclusiveBytes: null, sharedBytes: null, parentPending: true, parentReason: `"${node.name}"'s placeholder until the mappings are compared` }
        : { ...node, exclusiveBytes: null, sharedBytes: null },
    ),
  };
}

describe('the tree before and after its space figures', () => {
  let fake: ReturnType<typeof fakeConnection>;
  let jobCount = 0;
  /** The latest job id of each kind. */
  const latest = new Map<string, string>();
  const order: string[] = [];

  /** The fake main's job.start: ids job-N-KIND, the latest of each kind and the order remembered. */
  function startJob(args: unknown): { jobId: string } {
    const kind = (args as { kind: string }).kind;
    const jobId = `job-${++jobCount}-${kind}`;
    latest.set(kind, jobId);
    order.push(kind);
    return { jobId };
  }

  beforeEach(() => {
    setActivePinia(createPinia());
    latest.clear();
    order.length = 0;
    fake = fakeConnection({ 'job.start': startJob });
    replaceConnection(fake);
  });
  afterEach(() => replaceConnection(null));

  function end(kind: string, result: unknown): void {
    fake.emit('job.end', { jobId: latest.get(kind) ?? '', ok: true, result });
  }

  function node(pane: VueWrapper, id: string) {
    return pane.get(`[data-testid="tree-node"][data-node-id="${id}"]`);
  }

  function space(pane: VueWrapper, id: string): { state: string | undefined; text: string } {
    const figure = node(pane, id).get('[data-testid="tree-node-space"]');
    return { state: figure.attributes('data-space'), text: figure.text() };
  }

  function places(pane: VueWrapper): Record<string, string | undefined> {
    return Object.fromEntries(pane.findAll('[data-testid="tree-node"]').map((found) => [found.attributes('data-node-id'), found.attributes('transform')]));
  }

  async function open(): Promise<{ pane: VueWrapper; loaded: Promise<void> }> {
    const data = useDiskDataStore();
    const loaded = data.load(PATH);
    await flushPromises();
    const pane = mount(SnapshotsPane, { props: { path: PATH }, global: { stubs: { SnapshotSpaceChart: true } } });
    return { pane, loaded };
  }

  it('draws the quick tree with every figure counting, then fills them in place: same nodes, same places, same tree', async () => {
    const { pane, loaded } = await open();
    // The quick tree is asked for first, so that no long job in the pool holds it up.
    expect(order[0]).toBe('snapshot.outline');
    expect([...order].sort()).toEqual(['chain.read', 'image.usage', 'snapshot.outline', 'snapshot.tree']);
    expect(pane.find('[data-testid="tree-loading"]').exists()).toBe(true);
    // Nothing said of the snapshots while they are read (UI audit: "No snapshots yet." beside "Reading snapshots…").
    expect(pane.get('[data-testid="tree-hint"]').text()).toBe('');
    expect(pane.text()).not.toContain('No snapshots yet');

    end('snapshot.outline', quickOf(FULL));
    await flushPromises();
    expect(pane.get('[data-testid="tree-hint"]').text()).toMatch(/^2 snapshots\. Drag to pan/);
    const data = useDiskDataStore().disks.get(PATH);
    expect(data).toMatchObject({ status: 'ready', counting: true });
    expect(pane.find('[data-testid="tree-loading"]').exists()).toBe(false);
    expect(node(pane, '2').get('[data-testid="tree-node-name"]').text()).toBe('before upgrade');
    expect(space(pane, '1')).toEqual({ state: 'counting', text: 'counting…' });
    expect(space(pane, '2')).toEqual({ state: 'counting', text: 'counting…' });
    expect(space(pane, 'current')).toEqual({ state: 'counting', text: 'counting…' });
    expect(pane.get('[data-testid="card-unsaved"]').attributes('data-space')).toBe('counting');
    expect(pane.get('[data-testid="card-unsaved"]').text()).toBe('counting…');
    const pendingEdge = pane.get('[data-testid="tree-edge"][data-to="2"]');
    expect(pendingEdge.attributes('data-pending')).toBe('true');
    expect(pendingEdge.get('title').text()).toContain('Parent for now:');
    const quickPlaces = places(pane);
    const shownTree = data?.tree;

    end('snapshot.tree', FULL);
    await flushPromises();
    expect(data?.counting).toBe(false);
    expect(space(pane, '1')).toEqual({ state: 'counted', text: '64 KiB' });
    expect(space(pane, '2')).toEqual({ state: 'counted', text: '3 MiB' });
    expect(space(pane, 'current')).toEqual({ state: 'counted', text: '2 MiB not in any snapshot' });
    expect(pane.get('[data-testid="card-unsaved"]').text()).toBe('2 MiB');
    expect(pane.get('[data-testid="card-unsaved"]').attributes('data-bytes')).toBe(String(2 * MiB));
    expect(pane.get('[data-testid="tree-edge"][data-to="2"]').attributes('data-pending')).toBe('false');
    expect(pane.get('[data-testid="tree-edge"][data-to="2"] title').text()).toBe(`Parent inferred: ${FULL.snapshots[1]?.parentReason}`);
    // Filled in, not replaced: nothing moved, and what watches the tree's identity (the map) sees no new disk.
    expect(places(pane)).toEqual(quickPlaces);
    expect(data?.tree).toBe(shownTree);
    expect(data?.tree).toEqual(FULL);

    end('image.usage', { virtualSize: 2 ** 40, fileSize: MiB, allocatedBytes: MiB, metadataBytes: 0, leakedBytes: 0, current: FULL.current, snapshots: [] });
    end('chain.read', { files: [], problem: null });
    await loaded;
  });

  it('a full tree in before the quick one (a small disk) is not undone by it', async () => {
    const { pane, loaded } = await open();
    end('snapshot.tree', FULL);
    end('snapshot.outline', quickOf(FULL));
    await flushPromises();
    expect(space(pane, '2')).toEqual({ state: 'counted', text: '3 MiB' });
    expect(useDiskDataStore().disks.get(PATH)?.tree).toEqual(FULL);
    end('image.usage', { virtualSize: 2 ** 40, fileSize: MiB, allocatedBytes: MiB, metadataBytes: 0, leakedBytes: 0, current: FULL.current, snapshots: [] });
    end('chain.read', { files: [], problem: null });
    await loaded;
  });

  it('a re-read keeps the last figures while recounting, counts a new snapshot, and a failed count leaves “not counted”', async () => {
    const { pane, loaded } = await open();
    end('snapshot.outline', quickOf(FULL));
    end('snapshot.tree', FULL);
    end('image.usage', { virtualSize: 2 ** 40, fileSize: MiB, allocatedBytes: MiB, metadataBytes: 0, leakedBytes: 0, current: FULL.current, snapshots: [] });
    end('chain.read', { files: [], problem: null });
    await loaded;

    // A snapshot was taken: the disk changed.
    fake.emit('image.changed', { path: PATH });
    await flushPromises();
    const taken = { ...(FULL.snapshots[0] as SnapshotTree['snapshots'][number]), id: '3', name: 'after upgrade', parentId: '2', date: '2026-11-27T12:00:00.000Z' };
    const after: SnapshotTree = { ...FULL, snapshots: [...FULL.snapshots, taken], currentParentId: '3' };
    end('snapshot.outline', { ...quickOf(after), currentParentPending: undefined });
    await flushPromises();
    expect(node(pane, '3').get('[data-testid="tree-node-name"]').text()).toBe('after upgrade');
    expect(space(pane, '3')).toEqual({ state: 'counting', text: 'counting…' });
    expect(space(pane, '2')).toEqual({ state: 'recounting', text: '3 MiB' });

    fake.emit('job.end', { jobId: latest.get('snapshot.tree') ?? '', ok: false, error: { code: 'CORRUPT', message: 'L2 table at 0x50000 points past the end of the file' } });
    await flushPromises();
    expect(space(pane, '2')).toEqual({ state: 'uncounted', text: 'not counted' });
    expect(space(pane, '3')).toEqual({ state: 'uncounted', text: 'not counted' });
    expect(useDiskDataStore().disks.get(PATH)).toMatchObject({ counting: false, status: 'ready' });
    end('image.usage', { virtualSize: 2 ** 40, fileSize: MiB, allocatedBytes: MiB, metadataBytes: 0, leakedBytes: 0, current: FULL.current, snapshots: [] });
    end('chain.read', { files: [], problem: null });
    await flushPromises();
    expect(useDiskDataStore().disks.get(PATH)?.error).toMatchObject({ code: 'CORRUPT' });
  });

  it('stops a long count on request: the tree stays, its figures "not counted", no error; "Count space" counts again', async () => {
    fake = fakeConnection({
      'job.start': startJob,
      'job.cancel': (args) => {
        // Main cancels the job; it ends as cancelled.
        queueMicrotask(() => fake.emit('job.end', { jobId: (args as { jobId: string }).jobId, ok: false, error: { code: 'CANCELLED', message: 'Cancelled' } }));
        return {};
      },
    });
    replaceConnection(fake);
    const { pane, loaded } = await open();
    end('snapshot.outline', quickOf(FULL));
    await flushPromises();
    expect(pane.find('[data-testid="count-again"]').exists()).toBe(false);
    const countJob = latest.get('snapshot.tree');

    await pane.get('[data-testid="stop-counting"]').trigger('click');
    await flushPromises();
    expect(fake.calls.filter((call) => call.name === 'job.cancel').map((call) => call.args)).toEqual([{ jobId: countJob }]);
    expect(space(pane, '1')).toEqual({ state: 'uncounted', text: 'not counted' });
    expect(space(pane, 'current')).toEqual({ state: 'uncounted', text: 'not counted' });
    expect(pane.find('[data-testid="stop-counting"]').exists()).toBe(false);
    end('image.usage', { virtualSize: 2 ** 40, fileSize: MiB, allocatedBytes: MiB, metadataBytes: 0, leakedBytes: 0, current: FULL.current, snapshots: [] });
    end('chain.read', { files: [], problem: null });
    await loaded;
    const data = useDiskDataStore().disks.get(PATH);
    expect(data).toMatchObject({ status: 'ready', counting: false, countStopped: true, error: null });
    expect(pane.find('[data-testid="tree-error"]').exists()).toBe(false);

    // Counting again: a new read, whose full tree fills the figures in.
    await pane.get('[data-testid="count-again"]').trigger('click');
    await flushPromises();
    expect(latest.get('snapshot.tree')).not.toBe(countJob);
    expect(data).toMatchObject({ counting: true, countStopped: false });
    end('snapshot.outline', quickOf(FULL));
    end('snapshot.tree', FULL);
    await flushPromises();
    expect(space(pane, '2')).toEqual({ state: 'counted', text: '3 MiB' });
    expect(pane.find('[data-testid="count-again"]').exists()).toBe(false);
  });
});
