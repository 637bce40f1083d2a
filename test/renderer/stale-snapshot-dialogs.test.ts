/**
 * A dialog opened for a snapshot acts on that snapshot or on nothing: when another program deletes
 * it, or deletes it and takes another that QEMU gives the same id, the dialog closes and says so;
 * a rename by another program is the same snapshot, and the dialog follows it.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { SnapshotTree } from '../../src/shared/ipc/contract.ts';
import type { SnapshotNode } from '../../src/shared/qcow2/model.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import App from '../../src/renderer/src/App.vue';
import { useDialogsStore } from '../../src/renderer/src/stores/dialogs.ts';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { fakeElectronApp } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';

function node(overrides: Partial<SnapshotNode>): SnapshotNode {
  return { id: '1', name: 'installed', parentId: null, parentInferred: false, date: '2025-11-20T10:00:00.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 4096, sharedBytes: 0, ...overrides };
}

function tree(...snapshots: SnapshotNode[]): SnapshotTree {
  return { snapshots, currentParentId: snapshots.at(-1)?.id ?? null, currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } };
}

const installed = node({ id: '1', name: 'installed' });
const chosen = node({ id: '2', name: 'via-alias', date: '2025-11-21T10:00:00.000Z' });

let pinia: Pinia;
let fake: ReturnType<typeof fakeElectronApp>;
let started: { kind: string; args: unknown }[];
let wrapper: VueWrapper | null = null;

beforeEach(async () => {
  pinia = createPinia();
  setActivePinia(pinia);
  started = [];
  fake = fakeElectronApp({
    'job.start': (request) => {
      started.push(request as { kind: string; args: unknown });
      return { jobId: `job-${started.length}` };
    },
  });
  replaceConnection(fake);
  wrapper = mount(App, { global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  fake.emit('menu.command', { command: 'open-path', path: PATH });
  await flushPromises();
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

async function openRevertFor(snapshot: SnapshotNode): Promise<VueWrapper> {
  const data = useDiskDataStore().disks.get(PATH);
  if (!data || !wrapper) throw new Error('the disk was not opened');
  data.tree = tree(installed, snapshot);
  useDiskDataStore().select(PATH, snapshot.id);
  fake.emit('menu.command', { command: 'snapshot.revert' });
  await flushPromises();
  expect(wrapper.get('[data-testid="dialog-title"]').text()).toBe(`Revert to “${snapshot.name}”?`);
  return wrapper;
}

async function treeBecomes(...snapshots: SnapshotNode[]): Promise<void> {
  const data = useDiskDataStore().disks.get(PATH);
  if (!data) throw new Error('the disk was not opened');
  data.tree = tree(...snapshots);
  await flushPromises();
}

describe('a snapshot dialog when another program changes the snapshots', () => {
  it('closes, saying so, when the id now names another snapshot (QEMU reuses a freed id), and starts nothing', async () => {
    const app = await openRevertFor(chosen);
    await treeBecomes(installed, node({ id: '2', name: 'other', date: '2025-11-22T10:00:00.000Z' }));
    expect(app.find('[data-testid="dialog-title"]').exists()).toBe(false);
    expect(app.get('[data-testid="app-message"]').text()).toContain('Snapshot “via-alias” was deleted or replaced by another program');
    expect(started.filter((job) => ['snapshot.apply', 'snapshot.create'].includes(job.kind))).toEqual([]);
    // The shell is not left behind an invisible dialog: its commands work again.
    fake.emit('menu.command', { command: 'snapshot.revert' });
    await flushPromises();
    expect(app.get('[data-testid="dialog-title"]').text()).toBe('Revert to “other”?');
  });

  it('closes, saying so, when the snapshot is gone', async () => {
    const app = await openRevertFor(chosen);
    await treeBecomes(installed);
    expect(app.find('[data-testid="dialog-title"]').exists()).toBe(false);
    expect(app.get('[data-testid="app-message"]').text()).toContain('“via-alias”');
  });

  it('closes at once, saying so, when asked for a snapshot the tree no longer has', async () => {
    const data = useDiskDataStore().disks.get(PATH);
    if (!data || !wrapper) throw new Error('the disk was not opened');
    data.tree = tree(installed);
    useDialogsStore().open({ kind: 'delete', path: PATH, snapshotId: '7' });
    await flushPromises();
    expect(useDialogsStore().current).toBeNull();
    expect(wrapper.get('[data-testid="app-message"]').text()).toContain('no longer on the disk');
  });

  it('follows a rename of the same snapshot', async () => {
    const app = await openRevertFor(chosen);
    await treeBecomes(installed, { ...chosen, name: 'renamed' });
    expect(app.get('[data-testid="dialog-title"]').text()).toBe('Revert to “renamed”?');
    expect(app.find('[data-testid="app-message"]').exists()).toBe(false);
  });
});

describe('Revert when the guest writes while its dialog is open (found by an audit: the data written meanwhile was lost)', () => {
  it('sends the figure it shows as the most the revert may discard, and turns on "snapshot first" when the figure grows, until the user chooses', async () => {
    const app = await openRevertFor(chosen);
    expect(app.get('[data-testid="revert-discards"]').attributes('data-bytes')).toBe('0');
    expect((app.get('[data-testid="revert-take-first"]').element as HTMLInputElement).checked).toBe(false);
    // Another program writes 8 MiB: the tree is read again.
    const written = tree(installed, chosen);
    written.current.exclusiveBytes = 8 * 1024 * 1024;
    const data = useDiskDataStore().disks.get(PATH);
    if (!data) throw new Error('the disk was not opened');
    data.tree = written;
    await flushPromises();
    expect((app.get('[data-testid="revert-take-first"]').element as HTMLInputElement).checked).toBe(true);
    // The user chooses to revert without a snapshot: the bound is what the dialog now shows.
    await app.get('[data-testid="revert-take-first"]').setValue(false);
    data.tree = tree(installed, chosen);
    await flushPromises();
    expect((app.get('[data-testid="revert-take-first"]').element as HTMLInputElement).checked, 'the user\'s choice stays').toBe(false);
    await app.get('[data-testid="dialog-submit"]').trigger('click');
    await flushPromises();
    expect(started.filter((job) => job.kind === 'snapshot.apply')).toEqual([{ kind: 'snapshot.apply', path: PATH, args: { name: 'via-alias', id: '2', date: chosen.date, discardUpTo: 0 }, title: expect.any(String) }]);
  });
});
