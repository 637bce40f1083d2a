/**
 * Snapshot notes in the app: the selected snapshot's card shows its note and opens the editor; the
 * note dialog and the take-snapshot dialog count the note in UTF-8 bytes as the engine does,
 * refuse a longer one, and send what the contract takes.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jobSchemas, type ImageInfo, type SnapshotTree } from '../../src/shared/ipc/contract.ts';
import type { SnapshotNode } from '../../src/shared/qcow2/model.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import SnapshotNoteDialog from '../../src/renderer/src/components/dialogs/SnapshotNoteDialog.vue';
import TakeSnapshotDialog from '../../src/renderer/src/components/dialogs/TakeSnapshotDialog.vue';
import SelectedNodeCard from '../../src/renderer/src/components/tree/SelectedNodeCard.vue';
import SnapshotTreeView from '../../src/renderer/src/components/tree/SnapshotTreeView.vue';
import App from '../../src/renderer/src/App.vue';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, fakeElectronApp, imageInfo } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';

function node(overrides: Partial<SnapshotNode> = {}): SnapshotNode {
  return { id: '1', name: 'installed', parentId: null, parentInferred: false, date: '2025-11-20T10:00:00.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 4096, sharedBytes: 0, ...overrides };
}

function tree(snapshot: SnapshotNode): SnapshotTree {
  return { snapshots: [snapshot], currentParentId: snapshot.id, currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } };
}

let pinia: Pinia;
let started: { kind: string; args: unknown }[];
let info: ImageInfo;
let wrapper: VueWrapper | null = null;

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  started = [];
  info = imageInfo({ filename: PATH });
  replaceConnection(
    fakeConnection({
      'job.start': (request) => {
        const { kind, args } = request as { kind: string; args: unknown };
        started.push({ kind, args });
        return { jobId: `job-${started.length}` };
      },
      'image.open': () => info,
      'image.watch': () => null,
    }),
  );
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

describe("the selected snapshot's card", () => {
  it('shows the note as text, line breaks kept and markup not interpreted, and asks to edit it', async () => {
    const note = 'Before the upgrade\n<b>kernel 6.8</b>';
    wrapper = mount(SelectedNodeCard, { props: { tree: tree(node({ note })), selectedId: '1', blockedReason: null } });
    const shown = wrapper.get('[data-testid="card-note-text"]');
    expect(shown.text()).toBe('Before the upgrade\n<b>kernel 6.8</b>');
    expect(shown.find('b').exists()).toBe(false);
    const edit = wrapper.get('[data-testid="action-note"]');
    expect(edit.text()).toBe('Edit Note…');
    await edit.trigger('click');
    expect(wrapper.emitted('note')).toEqual([['1']]);
  });

  it('without a note offers to add one; on a disk that cannot be written the button is disabled and says why', async () => {
    wrapper = mount(SelectedNodeCard, { props: { tree: tree(node()), selectedId: '1', blockedReason: 'Read-only: the file is read-only' } });
    expect(wrapper.find('[data-testid="card-note-text"]').exists()).toBe(false);
    const add = wrapper.get('[data-testid="action-note"]');
    expect(add.text()).toBe('Add a Note…');
    expect(add.attributes('disabled')).toBeDefined();
    expect(wrapper.get('.note-action').attributes('title')).toBe('Read-only: the file is read-only');
  });
});

describe('the drawn tree', () => {
  it("a node's tooltip carries its note under the name; a node without one has none", () => {
    const noted = node({ note: 'why I took it' });
    const plain = node({ id: '2', name: 'later', parentId: '1' });
    wrapper = mount(SnapshotTreeView, { props: { tree: { ...tree(noted), snapshots: [noted, plain] }, selectedId: null, hoveredId: null } });
    const titles = wrapper.findAll('[data-testid="tree-node"]').map((element) => element.get('title').text().split('\n').slice(0, 2));
    expect(titles[0]).toEqual(['installed', '“why I took it”']);
    expect(titles[1]?.[1]).toMatch(/^Taken /);
  });
});

describe('the note dialog', () => {
  async function open(snapshot: SnapshotNode): Promise<VueWrapper> {
    wrapper = mount(SnapshotNoteDialog, { props: { path: PATH, snapshot }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    return wrapper;
  }

  it('starts from the note there is, counts UTF-8 bytes, and saves the trimmed text as a snapshot.note job', async () => {
    const dialog = await open(node({ note: 'old words' }));
    const field = dialog.get<HTMLTextAreaElement>('[data-testid="snapshot-note-input"]');
    expect(field.element.value).toBe('old words');
    await field.setValue('  Vor dem Update ✓  ');
    // "Vor dem Update ✓": 15 one-byte characters and a three-byte check mark.
    expect(dialog.get('[data-testid="snapshot-note-room"]').text()).toBe('18 of 512 bytes');
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ kind: 'snapshot.note', args: { name: 'installed', id: '1', date: '2025-11-20T10:00:00.000Z', note: 'Vor dem Update ✓' } }]);
    expect(jobSchemas['snapshot.note'].args.safeParse(started[0]?.args).success).toBe(true);
  });

  it('refuses a note over 512 bytes even when it has fewer characters, and sends nothing', async () => {
    const dialog = await open(node());
    await dialog.get('[data-testid="snapshot-note-input"]').setValue('é'.repeat(257));
    expect(dialog.get('[data-testid="snapshot-note-room"]').text()).toBe('514 of 512 bytes');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toMatch(/514 bytes long; a snapshot keeps at most 512/);
    expect(dialog.get('[data-testid="dialog-submit"]').attributes('disabled')).toBeDefined();
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([]);
  });

  it('an emptied note clears it; an unchanged one starts no job', async () => {
    let dialog = await open(node({ note: 'to go' }));
    await dialog.get('[data-testid="snapshot-note-input"]').setValue('   ');
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ kind: 'snapshot.note', args: { name: 'installed', id: '1', date: '2025-11-20T10:00:00.000Z', note: '' } }]);
    dialog.unmount();
    started = [];
    dialog = await open(node({ note: 'same' }));
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([]);
  });
});

describe('the take-snapshot dialog', () => {
  async function open(): Promise<VueWrapper> {
    wrapper = mount(TakeSnapshotDialog, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    return wrapper;
  }

  it('sends the optional note with the name, and no note key when it is left empty', async () => {
    let dialog = await open();
    await dialog.get('[data-testid="snapshot-name-input"]').setValue('before');
    await dialog.get('[data-testid="snapshot-note-input"]').setValue('why I took it');
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ kind: 'snapshot.create', args: { name: 'before', note: 'why I took it' } }]);
    dialog.unmount();
    started = [];
    dialog = await open();
    await dialog.get('[data-testid="snapshot-name-input"]').setValue('plain');
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ kind: 'snapshot.create', args: { name: 'plain' } }]);
  });

  it('holds back a note that is too long', async () => {
    const dialog = await open();
    await dialog.get('[data-testid="snapshot-note-input"]').setValue('x'.repeat(513));
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toMatch(/513 bytes long/);
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([]);
  });
});

describe('Snapshot > Edit Snapshot Note… in the application menu', () => {
  it('opens the note dialog for the snapshot selected in the tree', async () => {
    const fake = fakeElectronApp({ 'job.start': () => ({ jobId: 'job-tree' }) });
    replaceConnection(fake);
    wrapper = mount(App, { global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    fake.emit('menu.command', { command: 'open-path', path: PATH });
    await flushPromises();
    const data = useDiskDataStore().disks.get(PATH);
    if (!data) throw new Error('the disk was not opened');
    data.tree = tree(node({ note: 'the old note' }));
    useDiskDataStore().select(PATH, '1');
    fake.emit('menu.command', { command: 'snapshot.note' });
    await flushPromises();
    expect(wrapper.get('[data-testid="dialog-title"]').text()).toBe('Note for “installed”');
    expect((wrapper.get('[data-testid="snapshot-note-input"]').element as HTMLTextAreaElement).value).toBe('the old note');
  });
});
