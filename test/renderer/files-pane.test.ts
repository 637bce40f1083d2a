/**
 * The Files panel and its two dialogs against a fake main: what they ask for (one folder at a time,
 * the state selected in the tree), what they show (volumes, entries, breadcrumb, an encrypted disk's
 * unlock), and what Restore… and Compare files with… send and show at the end.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FilesCopyOutResult, GuestFilesDiff, GuestFolderListing, SnapshotTree } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import CompareFilesDialog from '../../src/renderer/src/components/dialogs/CompareFilesDialog.vue';
import RestoreFilesDialog, { proposedName } from '../../src/renderer/src/components/dialogs/RestoreFilesDialog.vue';
import FilesPane from '../../src/renderer/src/components/files/FilesPane.vue';
import { useDialogsStore } from '../../src/renderer/src/stores/dialogs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeJobsConnection, imageInfo, type fakeConnection, type JobOutcome, type StartedJob } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';
const tree: SnapshotTree = {
  snapshots: [{ id: '1', name: 'before upgrade', parentId: null, parentInferred: false, date: '2025-11-25T15:48:00Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 }],
  currentParentId: '1',
  currentParentInferred: false,
  current: { exclusiveBytes: 0, sharedBytes: 0 },
};

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: StartedJob[];
let endJob: (kind: string, outcome: JobOutcome) => void;
let wrapper: VueWrapper | null = null;

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  ({ fake, started, end: endJob } = fakeJobsConnection());
  replaceConnection(fake);
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info: imageInfo({ filename: PATH }), error: null, refreshing: false }];
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

async function end(kind: string, outcome: JobOutcome): Promise<void> {
  endJob(kind, outcome);
  await flushPromises();
}

const rootListing: GuestFolderListing = {
  state: 'current',
  path: '/',
  volumes: [
    { name: '1', offset: 1048576, length: 512 * 1048576, table: 'gpt', filesystem: 'ext', label: 'root' },
    { name: '2', offset: 513 * 1048576, length: 64 * 1048576, table: 'gpt', filesystem: null },
  ],
  entries: [
    { name: '1', path: '/1', kind: 'directory', size: 0, mtimeMs: null },
    { name: '2', path: '/2', kind: 'directory', size: 0, mtimeMs: null },
  ],
};

async function mountPane(selectedId = 'current', encrypted = false): Promise<VueWrapper> {
  wrapper = mount(FilesPane, { props: { path: PATH, tree, selectedId, encrypted }, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

const rows = (view: VueWrapper) => view.findAll('[data-testid="file-row"]');

describe('the Files panel', () => {
  it('lists the selected state’s root: its volumes with filesystem and label, an unreadable one with why', async () => {
    const view = await mountPane();
    expect(started.map((job) => [job.kind, job.args])).toEqual([['files.list', { state: 'current', path: '/' }]]);
    await end('files.list', { result: rootListing });
    expect(rows(view).map((row) => row.attributes('data-name'))).toEqual(['1', '2']);
    expect(rows(view)[0]!.get('[data-testid="volume-info"]').text()).toBe('ext2/3/4 · “root” · 512 MiB');
    expect(rows(view)[1]!.get('[data-testid="volume-info"]').text()).toBe('No filesystem Cowbell can read');
    expect(rows(view)[1]!.get('button.folder-name').attributes('disabled')).toBeDefined();
  });

  it('names what a volume holds that is no filesystem (swap, an encrypted volume), without calling it a problem, and does not open it', async () => {
    const view = await mountPane();
    await end('files.list', {
      result: {
        ...rootListing,
        volumes: [
          { name: '1', offset: 1048576, length: 512 * 1048576, table: 'gpt', filesystem: null, holds: 'swap' },
          { name: '2', offset: 513 * 1048576, length: 64 * 1048576, table: 'gpt', filesystem: null, holds: 'luks' },
        ],
      },
    });
    expect(rows(view)[0]!.get('[data-testid="volume-info"]').text()).toBe('Swap space · 512 MiB');
    expect(rows(view)[1]!.get('[data-testid="volume-info"]').text()).toBe('A LUKS-encrypted volume (its files are read once it is unlocked with its passphrase) · 64 MiB');
    // The encrypted one shows a lock where a volume shows a disk.
    expect(rows(view).map((row) => row.get('.kind-icon').attributes('data-icon'))).toEqual(['disk', 'lock']);
    for (const row of rows(view)) {
      expect(row.get('[data-testid="volume-info"]').classes()).not.toContain('problem');
      expect(row.get('button.folder-name').attributes('disabled')).toBeDefined();
    }
  });

  it('says, above the listing, what to keep in mind about a volume that reads with a caution (Windows had it mounted)', async () => {
    const view = await mountPane();
    const caution = 'Windows had this volume mounted (it was not shut down cleanly, or the snapshot was taken while it ran): changes it had not yet written home may be missing';
    const withCaution: GuestFolderListing = { ...rootListing, volumes: [rootListing.volumes[0]!, { ...rootListing.volumes[1]!, filesystem: 'ntfs', caution }] };
    await end('files.list', { result: withCaution });
    expect(view.get('[data-testid="files-caution"]').text()).toBe(`Volume /2: ${caution}.`);
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    await end('files.list', { result: { ...withCaution, path: '/1', entries: [] } });
    // Inside the other volume: nothing to say.
    expect(view.find('[data-testid="files-caution"]').exists()).toBe(false);
    await view.findAll('[data-testid="files-breadcrumb"] button')[0]!.trigger('click');
    await end('files.list', { result: withCaution });
    await rows(view)[1]!.get('button.folder-name').trigger('click');
    await end('files.list', { result: { ...withCaution, path: '/2', entries: [] } });
    expect(view.get('[data-testid="files-caution"]').text()).toBe(`${caution}.`);
  });

  it('opens a folder when clicked, one folder per request, and goes back by the breadcrumb', async () => {
    const view = await mountPane();
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { state: 'current', path: '/1' } });
    await end('files.list', {
      result: {
        ...rootListing,
        path: '/1',
        entries: [
          { name: 'hostname', path: '/1/hostname', kind: 'file', size: 4, mtimeMs: 1_700_000_000_000 },
          { name: 'etc', path: '/1/etc', kind: 'directory', size: 4096, mtimeMs: 1_700_000_000_000 },
          { name: 'lib', path: '/1/lib', kind: 'symlink', size: 7, mtimeMs: 1_700_000_000_000, target: 'usr/lib' },
        ],
      },
    });
    // Folders first, then by name.
    expect(rows(view).map((row) => [row.attributes('data-name'), row.attributes('data-kind')])).toEqual([
      ['etc', 'directory'],
      ['hostname', 'file'],
      ['lib', 'symlink'],
    ]);
    expect(rows(view)[1]!.text()).toContain('4 B');
    expect(rows(view)[2]!.text()).toContain('→ usr/lib');
    const crumbs = view.findAll('[data-testid="files-breadcrumb"] button');
    expect(crumbs.map((crumb) => crumb.text())).toEqual(['Current state', '1']);
    await crumbs[0]!.trigger('click');
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { state: 'current', path: '/' } });
  });

  it('shows an entry the guest filesystem is damaged at by name, "Cannot be read" with why on hover, and offers no restore of it', async () => {
    const view = await mountPane();
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    await end('files.list', {
      result: {
        ...rootListing,
        path: '/1',
        entries: [
          { name: 'hostname', path: '/1/hostname', kind: 'file', size: 4, mtimeMs: 1_700_000_000_000 },
          { name: 'passwd', path: '/1/passwd', kind: 'other', size: 0, mtimeMs: null, damaged: 'The XFS filesystem is damaged: inode 133 has no inode signature' },
        ],
      },
    });
    const damaged = rows(view)[1]!;
    expect(damaged.attributes('data-name')).toBe('passwd');
    expect(damaged.get('[data-testid="entry-damaged"]').text()).toBe('Cannot be read');
    expect(damaged.get('[data-testid="entry-damaged"]').attributes('title')).toMatch(/no inode signature/);
    expect(damaged.find('.size').exists()).toBe(false);
    expect(damaged.get('[data-testid="file-restore"]').attributes('disabled')).toBeDefined();
    expect(rows(view)[0]!.find('[data-testid="entry-damaged"]').exists()).toBe(false);
  });

  it('keeps the end of a long name in view, where names in one folder differ (UI audit: a narrow panel showed rows of "a-file-with-a-ra…" alike)', async () => {
    const view = await mountPane();
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    const long = (number: number) => `linux-image-6.1.0-${number}-amd64_6.1.55-1_amd64.deb`;
    await end('files.list', {
      result: {
        ...rootListing,
        path: '/1',
        entries: [
          { name: long(12), path: `/1/${long(12)}`, kind: 'file', size: 4, mtimeMs: 1_700_000_000_000 },
          { name: 'a-folder-named-at-length-2025', path: '/1/a-folder-named-at-length-2025', kind: 'directory', size: 0, mtimeMs: 1_700_000_000_000 },
          { name: 'short.txt', path: '/1/short.txt', kind: 'file', size: 4, mtimeMs: null },
        ],
      },
    });
    const [folder, file, short] = rows(view);
    // The tail is its own element that no ellipsis cuts; the head and tail together are the name.
    expect(folder!.get('[data-testid="name-tail"]').text()).toBe('ength-2025');
    expect(folder!.get('.name').text()).toBe('a-folder-named-at-length-2025');
    expect(file!.get('[data-testid="name-tail"]').text()).toBe('_amd64.deb');
    expect(file!.get('.name').text()).toBe(long(12));
    expect(short!.get('[data-testid="name-tail"]').text()).toBe('');
    // A narrow panel leaves the date column out: the name's tooltip says when it was modified.
    expect(file!.get('.name').attributes('title')).toMatch(new RegExp(`^/1/${long(12)}\nModified \\S`));
    expect(short!.get('.name').attributes('title')).toBe('/1/short.txt');
  });

  it('follows the state selected in the tree, keeping the open folder', async () => {
    const view = await mountPane();
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    await end('files.list', { result: { ...rootListing, path: '/1', entries: [] } });
    await view.setProps({ selectedId: '1' });
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { state: '1', stateDate: '2025-11-25T15:48:00Z', path: '/1' } });
  });

  it('reads the open folder again when the tree is read again (the disk changed), with the time the new tree shows', async () => {
    const view = await mountPane('1');
    await end('files.list', { result: rootListing });
    const listed = started.length;
    // Another program deleted the snapshot and made one again: same id, another time.
    const remade = { ...tree, snapshots: [{ ...tree.snapshots[0]!, name: 'other', date: '2025-12-01T10:00:00Z' }] };
    await view.setProps({ tree: remade });
    await flushPromises();
    expect(started.length).toBe(listed + 1);
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { state: '1', stateDate: '2025-12-01T10:00:00Z', path: '/' } });
    // Restore names the state the list was read from, with its time.
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('[data-testid="file-restore"]').trigger('click');
    expect(useDialogsStore().current).toMatchObject({ kind: 'files-restore', state: '1', stateDate: '2025-12-01T10:00:00Z', stateName: 'other' });
  });

  it('offers Restore… and Compare files with… as dialogs on the selected state', async () => {
    const view = await mountPane();
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('[data-testid="file-restore"]').trigger('click');
    expect(useDialogsStore().current).toEqual({ kind: 'files-restore', path: PATH, state: 'current', stateName: 'Current state', guestPath: '/1', entryKind: 'directory' });
    await view.get('[data-testid="files-compare-select"]').setValue('1');
    // A snapshot goes with the time the tree showed (a snapshot made again under its id is refused).
    expect(useDialogsStore().current).toEqual({ kind: 'files-compare', path: PATH, from: '1', fromDate: '2025-11-25T15:48:00Z', fromName: 'before upgrade', to: 'current', toName: 'Current state' });
    // From the snapshot's side too, the comparison reads forward in time.
    await view.setProps({ selectedId: '1' });
    await view.get('[data-testid="files-compare-select"]').setValue('current');
    expect(useDialogsStore().current).toMatchObject({ from: '1', to: 'current' });
  });

  it('asks for an encrypted disk’s passphrase once, then lists with it', async () => {
    const view = await mountPane('current', true);
    await end('files.list', { error: { code: 'LOCKED', message: 'the disk is encrypted' } });
    expect(view.find('[data-testid="files-locked"]').exists()).toBe(true);
    await view.get('[data-testid="files-passphrase"]').setValue('moo');
    await view.get('.unlock').trigger('submit');
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { state: 'current', path: '/', passphrase: 'moo' } });
    await end('files.list', { result: rootListing });
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { path: '/1', passphrase: 'moo' } });
  });

  it('a wrong passphrase typed is said; one kept from earlier that stopped working (changed elsewhere) only asks again', async () => {
    const view = await mountPane('current', true);
    await end('files.list', { error: { code: 'LOCKED', message: 'the disk is encrypted' } });
    await view.get('[data-testid="files-passphrase"]').setValue('wrong');
    await view.get('.unlock').trigger('submit');
    await end('files.list', { error: { code: 'BAD_PASSPHRASE', message: 'The passphrase opens none of the key slots' } });
    expect(view.get('[data-testid="files-locked"]').text()).toContain('That passphrase does not open this disk.');
    // The field has the focus back to type it again (it was on the page's body), and says why.
    await flushPromises();
    const field = view.get('[data-testid="files-passphrase"]');
    expect(document.activeElement).toBe(field.element);
    expect(field.attributes('aria-invalid')).toBe('true');
    expect(document.getElementById(field.attributes('aria-describedby') ?? '')?.textContent).toContain('That passphrase does not open this disk.');
    await view.get('[data-testid="files-passphrase"]').setValue('moo');
    await view.get('.unlock').trigger('submit');
    await end('files.list', { result: rootListing });
    // The passphrase is changed by another program; the next listing with the kept one fails.
    await rows(view)[0]!.get('button.folder-name').trigger('click');
    await end('files.list', { error: { code: 'BAD_PASSPHRASE', message: 'The passphrase opens none of the key slots' } });
    expect(view.get('[data-testid="files-locked"]').text()).toContain('This disk is encrypted: unlock it to see its files.');
  });

  it('says once that a volume holds no file system it reads (the title and the detail said it twice), with what it may be', async () => {
    const view = await mountPane();
    await end('files.list', { error: { code: 'NO_FILESYSTEM', message: 'Partition 2 holds no filesystem Cowbell can read (swap)' } });
    const error = view.get('[data-testid="files-error"]');
    expect(error.get('strong').text()).toBe('Partition 2 holds no filesystem Cowbell can read (swap)');
    expect(error.get('.detail').text()).toBe('Cowbell lists the files of ext2/3/4, XFS, btrfs, FAT and NTFS volumes.');
  });

  it('says why a folder cannot be read, with the error’s own words', async () => {
    const view = await mountPane();
    await end('files.list', { error: { code: 'FILESYSTEM_CORRUPT', message: 'inode 12 points past the end of the volume' } });
    const error = view.get('[data-testid="files-error"]');
    expect(error.attributes('data-code')).toBe('FILESYSTEM_CORRUPT');
    expect(error.text()).toContain('inode 12 points past the end of the volume');
  });
});

describe('Restore…', () => {
  it('proposes the entry’s own name, sends the state, path and target, and shows where the copy went', async () => {
    expect(proposedName('/1/etc/hostname')).toBe('hostname');
    expect(proposedName('/1')).toBe('volume-1');
    // A name with a backslash, as listings spell it (doubled), is proposed as the guest has it; a byte that is not UTF-8 keeps its \\xNN.
    expect(proposedName('/etc/systemd/dev-disk-by\\\\x2duuid-1.swap')).toBe('dev-disk-by\\x2duuid-1.swap');
    expect(proposedName('/caf\\xe9')).toBe('caf\\xe9');
    expect(proposedName('/')).toBe('disk-root');
    wrapper = mount(RestoreFilesDialog, {
      props: { path: PATH, state: '1', stateName: 'before upgrade', guestPath: '/1/etc/hostname', entryKind: 'file' },
      global: { plugins: [pinia] },
      attachTo: document.body,
    });
    await flushPromises();
    expect(wrapper.get('[data-testid="restore-target"]').text()).toBe('/disks/hostname');
    await wrapper.get('[data-testid="restore-folder"]').setValue('relative');
    expect(wrapper.get('[data-testid="dialog-problem"]').text()).toContain('full path');
    await wrapper.get('[data-testid="restore-folder"]').setValue('/home/me');
    await wrapper.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toEqual({ id: 'job-1', kind: 'files.copyOut', path: PATH, args: { state: '1', path: '/1/etc/hostname', target: '/home/me/hostname' } });
    const result: FilesCopyOutResult = { target: '/home/me/hostname', kind: 'file', files: 1, folders: 0, symlinks: 0, bytes: 4, skipped: [] };
    await end('files.copyOut', { result });
    expect(wrapper.get('[data-testid="restore-result"]').attributes('data-target')).toBe('/home/me/hostname');
  });
});

describe('Restore… to a place that cannot take it', () => {
  it('says before the copy starts that the name is taken or the folder missing (UI audit: it promised never to replace a file, then failed after submit)', async () => {
    ({ fake, started, end: endJob } = fakeJobsConnection({
      'path.stat': (args) => (args as { paths: string[] }).paths.map((path) => ({ path, kind: path === '/disks/hostname' ? 'file' : path === '/gone' ? 'missing' : path === '/disks' || path === '/home/me' ? 'folder' : 'missing' })),
    }));
    replaceConnection(fake);
    wrapper = mount(RestoreFilesDialog, {
      props: { path: PATH, state: '1', stateName: 'before upgrade', guestPath: '/1/etc/hostname', entryKind: 'file' },
      global: { plugins: [pinia] },
      attachTo: document.body,
    });
    await flushPromises();
    expect(wrapper.get('[data-testid="dialog-problem"]').text()).toBe('Something by that name is already there; choose another name.');
    await wrapper.get('form').trigger('submit');
    expect(started).toEqual([]);
    await wrapper.get('[data-testid="restore-folder"]').setValue('/gone');
    await flushPromises();
    expect(wrapper.get('[data-testid="dialog-problem"]').text()).toBe('That folder does not exist.');
    await wrapper.get('[data-testid="restore-folder"]').setValue('/home/me');
    await flushPromises();
    expect(wrapper.find('[data-testid="dialog-problem"]').exists()).toBe(false);
  });
});

describe('Restore… of a name holding a backslash (\\, \\xNN, \\uXXXX as the guest’s names are spelled)', () => {
  it('takes the name as proposed on Linux (it refused its own default, and the title cut the name at the backslash)', async () => {
    wrapper = mount(RestoreFilesDialog, {
      props: { path: PATH, state: '1', stateName: 'before upgrade', guestPath: '/1/x\\\\y/in\\\\x41', entryKind: 'directory' },
      global: { plugins: [pinia] },
      attachTo: document.body,
    });
    await flushPromises();
    // Proposed as the guest named it, with one backslash: the listing doubles it.
    expect(wrapper.get('[data-testid="restore-target"]').text()).toBe('/disks/in\\x41');
    expect(wrapper.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(wrapper.text()).toContain('Restore “in\\\\x41”');
    await wrapper.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'files.copyOut', args: { path: '/1/x\\\\y/in\\\\x41', target: '/disks/in\\x41' } });
  });
});

describe('Compare files with…', () => {
  it('starts the comparison at once and lists what differs, the bytes involved and the volumes skipped', async () => {
    wrapper = mount(CompareFilesDialog, {
      props: { path: PATH, from: '1', fromName: 'before upgrade', to: 'current', toName: 'Current state' },
      global: { plugins: [pinia] },
      attachTo: document.body,
    });
    await flushPromises();
    expect(started).toEqual([{ id: 'job-1', kind: 'files.diff', path: PATH, args: { from: '1', to: 'current' } }]);
    const result: GuestFilesDiff = {
      from: '1',
      to: 'current',
      differences: [
        { path: '/1/etc/hosts', change: 'added', kind: 'file', sizeAfter: 10 },
        { path: '/1/etc/hostname', change: 'changed', kind: 'file', sizeBefore: 4, sizeAfter: 6, reasons: ['size', 'mtime'] },
        { path: '/1/old', change: 'removed', kind: 'file', sizeBefore: 2048 },
      ],
      bytes: 2064,
      skipped: [
        { volume: '/2', reason: 'no filesystem Cowbell can read' },
        { volume: '/1', path: '/1/home/private', reason: '/1/home/private is encrypted inside the guest (ext4 encryption)' },
      ],
    };
    await end('files.diff', { result });
    const list = wrapper.findAll('[data-testid="compare-row"]');
    expect(list.map((row) => [row.attributes('data-change'), row.attributes('data-path')])).toEqual([
      ['added', '/1/etc/hosts'],
      ['changed', '/1/etc/hostname'],
      ['removed', '/1/old'],
    ]);
    expect(list[1]!.text()).toContain('size, date');
    expect(list[1]!.text()).toContain('4 B → 6 B');
    expect(wrapper.get('[data-testid="compare-summary"]').text()).toContain('2 KiB involved');
    expect(wrapper.get('[data-testid="compare-skipped"]').text()).toContain('/2: no filesystem Cowbell can read');
    // A folder left out is named by its path, not by its volume.
    expect(wrapper.get('[data-testid="compare-skipped"]').text()).toContain('/1/home/private: /1/home/private is encrypted');
  });
});
