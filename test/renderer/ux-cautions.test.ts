/**
 * What the dialogs tell a user before something that could cost them data (from the app audit):
 * a revert or shrink of a disk an open linked clone is built on, an unsafe rebase's result, a new
 * disk over an encrypted backing file, a dangerous dialog's focus, and a snapshot name too long
 * for a job's title.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it, onTestFinished, vi } from 'vitest';
import type { ImageInfo, JobEnd } from '../../src/shared/ipc/contract.ts';
import type { BackingChain, ChainFile, SnapshotNode, SnapshotTree } from '../../src/shared/qcow2/model.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import CreateDiskDialog from '../../src/renderer/src/components/dialogs/CreateDiskDialog.vue';
import DeleteSnapshotDialog from '../../src/renderer/src/components/dialogs/DeleteSnapshotDialog.vue';
import JobDialog from '../../src/renderer/src/components/dialogs/JobDialog.vue';
import LinkedCloneDialog from '../../src/renderer/src/components/dialogs/LinkedCloneDialog.vue';
import ResizeDialog from '../../src/renderer/src/components/dialogs/ResizeDialog.vue';
import RevertDialog from '../../src/renderer/src/components/dialogs/RevertDialog.vue';
import { describeRebase } from '../../src/renderer/src/lib/describe-chain.ts';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, imageInfo } from './fixtures.ts';

const BASE = '/disks/base.qcow2';
const CLONE = '/disks/clone.qcow2';

let pinia: Pinia;
let started: { kind: string; path: string; args: unknown; title?: string }[];
let infoReplies: Map<string, ImageInfo>;
let wrapper: VueWrapper | null = null;

function chainFile(path: string): ChainFile {
  return { path, name: path, format: 'qcow2', declaredFormat: 'qcow2', virtualSize: 1 << 30, fileSize: 1 << 20, allocatedBytes: 1 << 20, encrypted: false, snapshots: [], problem: null };
}

const snapshot: SnapshotNode = { id: '1', name: 'installed', parentId: null, parentInferred: false, date: '2026-12-01T10:00:00Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 };

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  started = [];
  infoReplies = new Map();
  replaceConnection(
    fakeConnection({
      'job.start': (request) => {
        const { kind, path, args, title } = request as { kind: string; path: string; args: unknown; title?: string };
        started.push({ kind, path, args, ...(title === undefined ? {} : { title }) });
        return { jobId: `job-${started.length}` };
      },
      'image.watch': () => null,
    }),
  );
  useLibraryStore().disks = [
    { path: BASE, status: 'ready', info: imageInfo({ filename: BASE }), error: null, refreshing: false },
    { path: CLONE, status: 'ready', info: imageInfo({ filename: CLONE }), error: null, refreshing: false },
  ];
  const data = useDiskDataStore();
  const chain: BackingChain = { complete: true, files: [chainFile(CLONE), chainFile(BASE)] };
  data.entry(CLONE).chain = chain;
  data.entry(BASE).chain = { complete: true, files: [chainFile(BASE)] };
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

async function mountDialog(component: unknown, props: Record<string, unknown>): Promise<VueWrapper> {
  wrapper = mount(component as Parameters<typeof mount>[0], { props, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

describe('a disk a linked clone is built on', () => {
  it('Revert names the open clone that will read differently; a disk nothing is built on says nothing of it', async () => {
    const dialog = await mountDialog(RevertDialog, { path: BASE, snapshot });
    expect(dialog.get('[data-testid="revert-clones"]').text()).toMatch(/clone\.qcow2 is a disk built on this one.*will read differently/);
    wrapper?.unmount();
    const other = await mountDialog(RevertDialog, { path: CLONE, snapshot });
    expect(other.find('[data-testid="revert-clones"]').exists()).toBe(false);
  });

  it('a shrink names it too (it reads zeros past the new end)', async () => {
    const dialog = await mountDialog(ResizeDialog, { path: BASE });
    await dialog.get('[data-testid="resize-size"]').setValue('512M');
    await flushPromises();
    expect(dialog.get('[data-testid="resize-clones"]').text()).toMatch(/clone\.qcow2 is a disk built on this one.*zeros/);
  });
});

describe('what an unsafe rebase says', () => {
  it('never that the disk reads as before: nothing was compared', () => {
    expect(describeRebase({ comparedBytes: 0, copiedBytes: 0 }, true)).toMatch(/Only the backing file’s name was changed.*nothing was compared or copied/);
    expect(describeRebase({ comparedBytes: 4096, copiedBytes: 0 })).toMatch(/no data needed copying: the disk reads as before/);
  });
});

describe('New Disk over an encrypted backing file', () => {
  it('warns that the new disk is not encrypted, from the backing file’s info read in the background', async () => {
    const connection = fakeConnection({
      'job.start': (request) => {
        const { kind, path } = request as { kind: string; path: string };
        started.push({ kind, path, args: null });
        const id = `job-${started.length}`;
        const info = infoReplies.get(path);
        if (kind === 'image.info' && info)
          setTimeout(() => {
            connection.emit('job.end', { jobId: id, ok: true, result: info } as JobEnd);
            answered.push(path);
          }, 10);
        return { jobId: id };
      },
      'image.watch': () => null,
    });
    replaceConnection(connection);
    const answered: string[] = [];
    infoReplies.set('/secure/encrypted.qcow2', imageInfo({ filename: '/secure/encrypted.qcow2', encrypted: true }));
    infoReplies.set('/disks/plain.qcow2', imageInfo({ filename: '/disks/plain.qcow2' }));
    const dialog = await mountDialog(CreateDiskDialog, { folder: '/disks' });
    // The read starts once the path stops changing (BACKING_READ_DELAY_MS): waited for as it ends, not for a fixed time a loaded machine can outrun.
    await dialog.get('[data-testid="create-backing"]').setValue('/secure/encrypted.qcow2');
    await vi.waitFor(() => expect(answered).toEqual(['/secure/encrypted.qcow2']), { timeout: 10_000 });
    await flushPromises();
    expect(dialog.get('[data-testid="create-unencrypted"]').text()).toMatch(/backing file is encrypted, but the new disk will not be/);
    await dialog.get('[data-testid="create-backing"]').setValue('/disks/plain.qcow2');
    await vi.waitFor(() => expect(answered).toEqual(['/secure/encrypted.qcow2', '/disks/plain.qcow2']), { timeout: 10_000 });
    await flushPromises();
    expect(dialog.find('[data-testid="create-unencrypted"]').exists()).toBe(false);
  });

  it('New Disk with a backing file takes the backing file\'s size unless one is typed (UI audit: a 20 GiB overlay on a 512 MiB base)', async () => {
    const dialog = await mountDialog(CreateDiskDialog, { folder: '/disks' });
    const size = () => (dialog.get('[data-testid="create-size"]').element as HTMLInputElement).value;
    expect(size()).toBe('20G');
    await dialog.get('[data-testid="create-backing"]').setValue('/disks/plain.qcow2');
    expect(size()).toBe('');
    expect(dialog.get('.hint').text()).toBe('the backing file’s size');
    await dialog.get('[data-testid="create-name"]').setValue('overlay.qcow2');
    await dialog.get('form').trigger('submit');
    expect(started.at(-1)).toMatchObject({ kind: 'image.create', path: '/disks/overlay.qcow2' });
    expect((started.at(-1)?.args as { size?: number }).size).toBeUndefined();
    // Without the backing file again, the default comes back; a size typed stays whatever happens.
    dialog.unmount();
    const again = await mountDialog(CreateDiskDialog, { folder: '/disks' });
    const sizeAgain = () => (again.get('[data-testid="create-size"]').element as HTMLInputElement).value;
    await again.get('[data-testid="create-backing"]').setValue('/disks/plain.qcow2');
    await again.get('[data-testid="create-backing"]').setValue('');
    expect(sizeAgain()).toBe('20G');
    await again.get('[data-testid="create-size"]').setValue('4G');
    await again.get('[data-testid="create-backing"]').setValue('/disks/plain.qcow2');
    expect(sizeAgain()).toBe('4G');
  });
});

describe('New Disk over a backing file that is not a qcow2 image', () => {
  it('refuses to record it as qcow2 (the new disk could not be opened), and makes it when raw is chosen', async () => {
    const connection = fakeConnection({
      'job.start': (request) => {
        const { kind, path, args } = request as { kind: string; path: string; args: unknown };
        started.push({ kind, path, args });
        const jobId = `job-${started.length}`;
        if (kind === 'image.info')
          setTimeout(() => {
            connection.emit('job.end', { jobId, ok: false, error: { code: 'BAD_MAGIC', message: 'not a qcow2 image' } } as JobEnd);
            answered.push(path);
          }, 10);
        return { jobId };
      },
      'image.watch': () => null,
    });
    replaceConnection(connection);
    const answered: string[] = [];
    const dialog = await mountDialog(CreateDiskDialog, { folder: '/disks' });
    await dialog.get('[data-testid="create-name"]').setValue('overlay.qcow2');
    await dialog.get('[data-testid="create-backing"]').setValue('/disks/golden.img');
    await vi.waitFor(() => expect(answered).toEqual(['/disks/golden.img']), { timeout: 10_000 });
    await flushPromises();
    expect((dialog.get('[data-testid="create-backing-format"]').element as HTMLSelectElement).value).toBe('qcow2');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('not a qcow2 image: recorded as qcow2, the disk could not be opened');
    await dialog.get('form').trigger('submit');
    expect(started.filter((job) => job.kind === 'image.create')).toEqual([]);
    await dialog.get('[data-testid="create-backing-format"]').setValue('raw');
    await dialog.get('form').trigger('submit');
    expect(started.at(-1)).toMatchObject({ kind: 'image.create', path: '/disks/overlay.qcow2', args: { backingFile: '/disks/golden.img', backingFormat: 'raw' } });
  });
});

describe('New Disk where it cannot be made', () => {
  it('says a name taken or a missing folder beside the field, before the job starts (UI audit: the dialog closed, the job failed in the Jobs panel)', async () => {
    replaceConnection(
      fakeConnection({
        'path.stat': (request) =>
          (request as { paths: string[] }).paths.map((path) => ({ path, kind: path === '/disks' ? 'folder' : path === '/disks/taken.qcow2' ? 'file' : 'missing' })),
        'job.start': (request) => {
          const { kind, path, args } = request as { kind: string; path: string; args: unknown };
          started.push({ kind, path, args });
          return { jobId: `job-${started.length}` };
        },
        'image.watch': () => null,
      }),
    );
    const dialog = await mountDialog(CreateDiskDialog, { folder: '/disks' });
    await dialog.get('[data-testid="create-name"]').setValue('taken.qcow2');
    await flushPromises();
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('Something by that name is already there; choose another name.');
    expect(dialog.get('[data-testid="create-name"]').attributes('aria-invalid')).toBe('true');
    expect(dialog.get('[data-testid="dialog-submit"]').attributes('disabled')).toBeDefined();
    await dialog.get('[data-testid="create-folder"]').setValue('/nowhere');
    await flushPromises();
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('That folder does not exist.');
    expect(dialog.get('[data-testid="create-folder"]').attributes('aria-invalid')).toBe('true');
    await dialog.get('[data-testid="create-folder"]').setValue('/disks/');
    await dialog.get('[data-testid="create-name"]').setValue('fresh.qcow2');
    await flushPromises();
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    await dialog.get('form').trigger('submit');
    expect(started.at(-1)).toMatchObject({ kind: 'image.create', path: '/disks/fresh.qcow2' });
  });
});

describe('a dangerous dialog', () => {
  it('Delete puts the focus on Cancel, so Enter does not delete', async () => {
    const dialog = await mountDialog(DeleteSnapshotDialog, { path: BASE, snapshot });
    expect(document.activeElement).toBe(dialog.get('[data-testid="dialog-cancel"]').element);
  });

  it('Delete says its child snapshots keep their data, in words that agree with how many (UI audit: "Its child snapshot keeps all their data")', async () => {
    const child = (id: string): SnapshotNode => ({ ...snapshot, id, name: `child ${id}`, parentId: '1' });
    const tree = (children: SnapshotNode[]): SnapshotTree => ({ snapshots: [snapshot, ...children], currentParentId: '1', currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } });
    useDiskDataStore().entry(BASE).tree = tree([child('2')]);
    const one = await mountDialog(DeleteSnapshotDialog, { path: BASE, snapshot });
    expect(one.get('[data-testid="delete-children"]').text()).toBe('Its child snapshot keeps all its data.');
    wrapper?.unmount();
    useDiskDataStore().entry(BASE).tree = tree([child('2'), child('3')]);
    const two = await mountDialog(DeleteSnapshotDialog, { path: BASE, snapshot });
    expect(two.get('[data-testid="delete-children"]').text()).toBe('Its 2 child snapshots keep all their data.');
  });
});

describe('a snapshot name longer than a job title may be', () => {
  it('is cut in the title (whole characters, an ellipsis), so the job starts', async () => {
    const jobs = useJobsStore();
    const name = `${'ü'.repeat(200)}😀${'x'.repeat(400)}`;
    void jobs.run('snapshot.create', BASE, { name }, { title: `Take snapshot “${name}”` }).catch(() => undefined);
    await flushPromises();
    const title = started.at(-1)?.title ?? '';
    expect(title.length).toBeLessThanOrEqual(300);
    expect(title.endsWith('…')).toBe(true);
    expect(title).not.toMatch(/\uD83D$/);
    expect(started.at(-1)?.args).toEqual({ name });
  });
});

describe('New Linked Clone…', () => {
  it('proposes a name nothing has yet, and refuses one that something has', async () => {
    const existing = new Set(['/disks/base-clone.qcow2', '/disks/base-clone-2.qcow2', '/disks/notes.txt']);
    const folders = new Set(['/', '/disks']);
    replaceConnection(
      fakeConnection({
        'path.stat': (request) => (request as { paths: string[] }).paths.map((path) => ({ path, kind: folders.has(path) ? 'folder' : existing.has(path) ? 'file' : 'missing' })),
        'image.watch': () => null,
      }),
    );
    const dialog = await mountDialog(LinkedCloneDialog, { path: BASE });
    expect((dialog.get('[data-testid="linked-clone-path"]').element as HTMLInputElement).value).toBe('/disks/base-clone-3.qcow2');
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    await dialog.get('[data-testid="linked-clone-path"]').setValue('/disks/notes.txt');
    await flushPromises();
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toMatch(/already there/);
    // A folder that is not there is said before the job starts (UI audit: the dialog closed and the job failed in the Jobs panel).
    await dialog.get('[data-testid="linked-clone-path"]').setValue('/nowhere/web.qcow2');
    await flushPromises();
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('That folder does not exist.');
    expect(dialog.get('[data-testid="dialog-submit"]').attributes('disabled')).toBeDefined();
    await dialog.get('[data-testid="linked-clone-path"]').setValue('/disks/notes.txt/web.qcow2');
    await flushPromises();
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('That is not a folder.');
    await dialog.get('[data-testid="linked-clone-path"]').setValue('/disks/web.qcow2');
    await flushPromises();
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
  });
});

interface JobDialogProps {
  title: string;
  submitLabel: string;
  tone?: 'normal' | 'danger';
  testid?: string;
}

/** The dialog frame alone, in the page, with `body` as its fields. */
function mountJobDialog(props: JobDialogProps, body: string): VueWrapper {
  return mount(JobDialog, { props, slots: { default: body }, global: { plugins: [pinia] }, attachTo: document.body });
}

describe('a dangerous dialog whose only fields are checkboxes', () => {
  it('puts the focus on Cancel (Enter on a focused checkbox submits the form)', async () => {
    wrapper = mountJobDialog({ title: 'Commit', submitLabel: 'Commit', tone: 'danger' }, '<label class="checkbox"><input type="checkbox" data-testid="keep" /> Keep the disk as it is</label>');
    await flushPromises();
    const dialog = wrapper;
    expect(document.activeElement).toBe(dialog.get('[data-testid="dialog-cancel"]').element);
  });
});

describe('an Enter that opened a dialog, pressed again or held (audit: a double Enter on Revert… reverted the disk)', () => {
  function enter(target: Element, init: KeyboardEventInit = {}): KeyboardEvent {
    const event = new KeyboardEvent('keydown', { key: 'Enter', bubbles: true, cancelable: true, ...init });
    target.dispatchEvent(event);
    return event;
  }

  it('does not act before the dialog could be read, nor while held; once read, or after typing, it does', async () => {
    // The dialog's clock (performance.now) is the test's: 'right after opening' must not depend on how fast a loaded machine mounts it.
    vi.useFakeTimers({ toFake: ['performance'] });
    onTestFinished(() => {
      vi.useRealTimers();
    });
    wrapper = mountJobDialog({ title: 'Take snapshot', submitLabel: 'Take' }, '<input data-testid="name" value="before update" />');
    await flushPromises();
    const field = wrapper.get('[data-testid="name"]').element;
    expect(enter(field).defaultPrevented, 'an Enter right after opening').toBe(true);
    vi.advanceTimersByTime(450);
    expect(enter(field, { repeat: true }).defaultPrevented, 'a held Enter').toBe(true);
    expect(enter(field).defaultPrevented, 'an Enter once the dialog could be read').toBe(false);
    wrapper.unmount();
    wrapper = mountJobDialog({ title: 'Take snapshot', submitLabel: 'Take' }, '<input data-testid="name" value="" />');
    await flushPromises();
    const typedInto = wrapper.get('[data-testid="name"]');
    await typedInto.setValue('quick');
    expect(enter(typedInto.element).defaultPrevented, 'an Enter after typing, however soon').toBe(false);
  });
});

describe('focus inside a dialog whose contents change', () => {
  it('goes to what is left when the focused action goes (a rewrite that started), not to the page behind', async () => {
    wrapper = mountJobDialog({ title: 'Compact', submitLabel: 'Compact' }, '<p>Copies the disk without its gaps.</p>');
    await flushPromises();
    const submit = wrapper.get('[data-testid="dialog-submit"]').element as HTMLElement;
    expect(document.activeElement).toBe(submit);
    submit.blur();
    expect(document.activeElement).toBe(document.body);
    await wrapper.setProps({ showSubmit: false });
    await flushPromises();
    expect(document.activeElement).toBe(wrapper.get('[data-testid="dialog-cancel"]').element);
  });

  it('in a dangerous dialog goes to Cancel, never to the action one Enter away', async () => {
    wrapper = mountJobDialog({ title: 'Delete “old”?', submitLabel: 'Delete Snapshot', tone: 'danger' }, '<p>This cannot be undone.</p>');
    await flushPromises();
    (wrapper.get('[data-testid="dialog-submit"]').element as HTMLElement).focus();
    (document.activeElement as HTMLElement).blur();
    // Any change of the dialog's contents (here its title) with the focus lost.
    await wrapper.setProps({ title: 'Delete “old” (2 children)?' });
    await flushPromises();
    expect(document.activeElement).toBe(wrapper.get('[data-testid="dialog-cancel"]').element);
  });

  it('names itself by its title and describes itself by its body; a dangerous one is an alert dialog', async () => {
    wrapper = mountJobDialog({ title: 'Delete “old”?', submitLabel: 'Delete Snapshot', tone: 'danger' }, '<p>This cannot be undone.</p>');
    await flushPromises();
    const dialog = wrapper.get('dialog').element;
    expect(dialog.getAttribute('role')).toBe('alertdialog');
    expect(document.getElementById(dialog.getAttribute('aria-labelledby') ?? '')?.textContent).toBe('Delete “old”?');
    expect(document.getElementById(dialog.getAttribute('aria-describedby') ?? '')?.textContent).toBe('This cannot be undone.');
  });
});

describe('focus when a dialog over another closes (an Unlock step over a Compact)', () => {
  it('returns to what had it in the dialog below, or to that dialog’s Cancel when that is gone', async () => {
    wrapper = mountJobDialog({ title: 'Compact', submitLabel: 'Compact' }, '<p>Copies the disk without its gaps.</p>');
    await flushPromises();
    const submit = wrapper.get('[data-testid="dialog-submit"]').element as HTMLElement;
    expect(document.activeElement).toBe(submit);
    const unlock = mountJobDialog({ title: 'Unlock', submitLabel: 'Unlock', testid: 'unlock' }, '<input data-testid="passphrase" type="password" />');
    await flushPromises();
    expect(document.activeElement).toBe(unlock.get('[data-testid="passphrase"]').element);
    unlock.unmount();
    expect(document.activeElement).toBe(submit);

    // The opener went meanwhile (the action gave way to the job's progress): the dialog below still takes the focus.
    const second = mountJobDialog({ title: 'Unlock', submitLabel: 'Unlock', testid: 'unlock' }, '<input data-testid="passphrase" type="password" />');
    await flushPromises();
    submit.remove();
    second.unmount();
    expect(document.activeElement).toBe(wrapper.get('[data-testid="dialog-cancel"]').element);
  });
});
