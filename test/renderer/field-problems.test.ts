/**
 * A dialog's problem line is tied to the field it is about (audit A's "errors not tied to fields"):
 * that field is aria-invalid and described by the line, the others are not, and a problem with the
 * disk itself (read-only, in use) marks no field.
 */
import { flushPromises, mount, type DOMWrapper, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageInfo } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import CreateDiskDialog from '../../src/renderer/src/components/dialogs/CreateDiskDialog.vue';
import PassphraseDialog from '../../src/renderer/src/components/dialogs/PassphraseDialog.vue';
import RenameSnapshotDialog from '../../src/renderer/src/components/dialogs/RenameSnapshotDialog.vue';
import TakeSnapshotDialog from '../../src/renderer/src/components/dialogs/TakeSnapshotDialog.vue';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, imageInfo } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';
let wrapper: VueWrapper | null = null;
let info: ImageInfo;

beforeEach(() => {
  setActivePinia(createPinia());
  info = imageInfo({ filename: PATH });
  replaceConnection(fakeConnection({ 'job.start': () => ({ jobId: 'job-1' }), 'image.open': () => info, 'image.watch': () => null, 'path.stat': () => ({ kind: 'missing' }) }));
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
  useDiskDataStore().disks.set(PATH, {
    path: PATH,
    status: 'ready',
    tree: { snapshots: [{ id: '1', name: 'installed', parentId: null, parentInferred: false, date: '2025-11-20T10:00:00.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 }], currentParentId: '1', currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } },
    counting: false,
    countStopped: false,
    usage: null,
    chain: null,
    error: null,
    selectedId: 'current',
    inUseReason: null,
    checkDamage: null,
  });
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

/** Whether the field is marked invalid and described by the shown problem line. */
function tiedToProblem(dialog: VueWrapper, field: Pick<DOMWrapper<Element>, 'attributes'>): boolean {
  const problem = dialog.find('[data-testid="dialog-problem"]');
  const invalid = field.attributes('aria-invalid') === 'true';
  const describedBy = field.attributes('aria-describedby');
  if (invalid) {
    expect(problem.exists()).toBe(true);
    expect(describedBy).toBe(problem.attributes('id'));
    expect(document.getElementById(describedBy ?? '')?.textContent).toBe(problem.text());
  } else expect(describedBy).toBeUndefined();
  return invalid;
}

describe('Take Snapshot', () => {
  it('marks the name when the name is taken, the note when it is too long, neither when the disk is in use', async () => {
    wrapper = mount(TakeSnapshotDialog, { props: { path: PATH }, attachTo: document.body });
    await flushPromises();
    const name = wrapper.get('[data-testid="snapshot-name-input"]');
    const note = wrapper.get('[data-testid="snapshot-note-input"]');
    expect([tiedToProblem(wrapper, name), tiedToProblem(wrapper, note)]).toEqual([false, false]);
    await name.setValue('installed');
    expect(wrapper.get('[data-testid="dialog-problem"]').text()).toMatch(/already/);
    expect([tiedToProblem(wrapper, name), tiedToProblem(wrapper, note)]).toEqual([true, false]);
    await name.setValue('before');
    await note.setValue('x'.repeat(513));
    expect([tiedToProblem(wrapper, name), tiedToProblem(wrapper, note)]).toEqual([false, true]);
    const data = useDiskDataStore().disks.get(PATH);
    if (data) data.inUseReason = 'A virtual machine is using this disk.';
    await flushPromises();
    expect(wrapper.get('[data-testid="dialog-problem"]').text()).toMatch(/virtual machine/);
    expect([tiedToProblem(wrapper, name), tiedToProblem(wrapper, note)]).toEqual([false, false]);
  });
});

describe('Rename', () => {
  it('marks the name field while the new name is taken or empty', async () => {
    const snapshot = useDiskDataStore().disks.get(PATH)?.tree?.snapshots[0];
    if (!snapshot) throw new Error('no snapshot');
    wrapper = mount(RenameSnapshotDialog, { props: { path: PATH, snapshot }, attachTo: document.body });
    await flushPromises();
    const name = wrapper.get('[data-testid="snapshot-name-input"]');
    await name.setValue('');
    expect(tiedToProblem(wrapper, name)).toBe(true);
    await name.setValue('renamed');
    expect(tiedToProblem(wrapper, name)).toBe(false);
    expect(wrapper.find('[data-testid="snapshot-name-id-caution"]').exists()).toBe(false);
  });

  it('cautions, without refusing, that a name another snapshot has as its id is read as that id by qemu-img', async () => {
    const tree = useDiskDataStore().disks.get(PATH)?.tree;
    if (!tree?.snapshots[0]) throw new Error('no snapshot');
    tree.snapshots.push({ ...tree.snapshots[0], id: '2', name: 'updated', parentId: '1' });
    wrapper = mount(RenameSnapshotDialog, { props: { path: PATH, snapshot: tree.snapshots[1] ?? tree.snapshots[0] }, attachTo: document.body });
    await flushPromises();
    await wrapper.get('[data-testid="snapshot-name-input"]').setValue('1');
    expect(wrapper.get('[data-testid="snapshot-name-id-caution"]').text()).toContain('“1” is the id of snapshot “installed”');
    expect(wrapper.find('[data-testid="dialog-problem"]').exists()).toBe(false);
  });
});

describe('New Disk', () => {
  it('marks the one field the problem is about: the folder, the name, the size', async () => {
    wrapper = mount(CreateDiskDialog, { props: { folder: '/disks' }, attachTo: document.body });
    await flushPromises();
    const fields = ['create-folder', 'create-name', 'create-size', 'create-backing'].map((id) => wrapper?.get(`[data-testid="${id}"]`));
    const marked = (): string[] => fields.filter((field) => field !== undefined && tiedToProblem(wrapper as VueWrapper, field)).map((field) => field?.attributes('data-testid') ?? '');
    await fields[0]?.setValue('disks');
    expect(marked()).toEqual(['create-folder']);
    await fields[0]?.setValue('/disks');
    await fields[1]?.setValue('a/b.qcow2');
    expect(marked()).toEqual(['create-name']);
    await fields[1]?.setValue('new.qcow2');
    await fields[2]?.setValue('twenty');
    expect(marked()).toEqual(['create-size']);
    await fields[2]?.setValue('20G');
    expect(marked()).toEqual([]);
    expect(wrapper.find('[data-testid="dialog-problem"]').exists()).toBe(false);
  });
});

describe('Change Passphrase', () => {
  it('marks the first new field while it is empty, the second while it differs; the current passphrase field never with the problem line (a wrong one is tied to its own notice: encryption-dialogs.test.ts)', async () => {
    info['format-specific'].data.encrypt = { format: 'luks' };
    info.encrypted = true;
    wrapper = mount(PassphraseDialog, { props: { path: PATH }, attachTo: document.body });
    await flushPromises();
    const fields = ['current-passphrase', 'new-passphrase', 'new-passphrase-repeat'].map((id) => wrapper?.get(`[data-testid="${id}"]`));
    const marked = (): string[] => fields.filter((field) => field !== undefined && tiedToProblem(wrapper as VueWrapper, field)).map((field) => field?.attributes('data-testid') ?? '');
    expect(marked()).toEqual([]);
    await fields[2]?.setValue('again');
    expect(marked()).toEqual(['new-passphrase']);
    await fields[1]?.setValue('first');
    expect(wrapper.get('[data-testid="dialog-problem"]').text()).toBe('The two passphrases differ.');
    expect(marked()).toEqual(['new-passphrase-repeat']);
    await fields[2]?.setValue('first');
    expect(marked()).toEqual([]);
  });
});
