/**
 * LUKS volumes inside the guest in the Files panel, against a fake main: a locked one says its
 * format and state and offers Unlock…; the passphrase given there goes with every files job of the
 * disk (list, compare, restore) once it opens the volume, is said wrong and forgotten when it does
 * not, and is kept in memory only, until the disk is closed.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GuestFolderListing, GuestVolumeInfo, SnapshotTree } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import CompareFilesDialog from '../../src/renderer/src/components/dialogs/CompareFilesDialog.vue';
import DialogHost from '../../src/renderer/src/components/dialogs/DialogHost.vue';
import RestoreFilesDialog from '../../src/renderer/src/components/dialogs/RestoreFilesDialog.vue';
import FilesPane from '../../src/renderer/src/components/files/FilesPane.vue';
import { useDialogsStore } from '../../src/renderer/src/stores/dialogs.ts';
import { useGuestFilesStore } from '../../src/renderer/src/stores/guest-files.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeJobsConnection, imageInfo, type fakeConnection, type JobOutcome, type StartedJob } from './fixtures.ts';

const PATH = '/disks/laptop.qcow2';
const UUID_2 = '3f1d2c4b-5a69-4e87-9b0c-1d2e3f405162';
const UUID_3 = '7c6b5a49-3827-4165-8f4e-3d2c1b0a9988';
const RIGHT = 'luks one';
const WRONG = 'not it';
const BAD_PASSPHRASE = 'The passphrase opens none of the encrypted volume’s key slots';
const tree: SnapshotTree = {
  snapshots: [{ id: '1', name: 'before', parentId: null, parentInferred: false, date: '2025-11-25T15:48:00Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 }],
  currentParentId: '1',
  currentParentInferred: false,
  current: { exclusiveBytes: 0, sharedBytes: 0 },
};
const MiB = 1048576;

const plain: GuestVolumeInfo = { name: '1', offset: MiB, length: 7 * MiB, table: 'gpt', filesystem: 'ext', label: 'boot' };
const cryptroot: GuestVolumeInfo = {
  name: '2', offset: 8 * MiB, length: 22 * MiB, table: 'gpt', filesystem: null, holds: 'luks',
  encryption: { format: 'luks2', uuid: UUID_2, label: 'cryptroot', cipher: 'aes-256-xts-plain64', sectorBytes: 4096, unlocked: false },
};
const locked3: GuestVolumeInfo = {
  name: '3', offset: 30 * MiB, length: 12 * MiB, table: 'gpt', filesystem: null, holds: 'luks',
  encryption: { format: 'luks1', uuid: UUID_3, cipher: 'aes-128-xts-plain64', sectorBytes: 512, unlocked: false },
};
const unlocked3: GuestVolumeInfo = { ...locked3, encryption: { ...locked3.encryption!, unlocked: true } };
const wrong3: GuestVolumeInfo = { ...locked3, encryption: { ...locked3.encryption!, problem: BAD_PASSPHRASE, problemCode: 'BAD_PASSPHRASE' } };
const inside3: GuestVolumeInfo = { name: `luks-${UUID_3}`, offset: 32 * MiB, length: 10 * MiB, table: 'gpt', filesystem: 'ext', encryptedIn: '3' };

function rootListing(volumes: GuestVolumeInfo[]): GuestFolderListing {
  return { state: 'current', path: '/', volumes, entries: volumes.map((volume) => ({ name: volume.name, path: `/${volume.name}`, kind: 'directory', size: 0, mtimeMs: null })) };
}
const lockedListing = rootListing([plain, cryptroot, locked3]);
const unlockedListing = rootListing([plain, cryptroot, unlocked3, inside3]);

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: StartedJob[];
let endJob: (kind: string, outcome: JobOutcome) => void;
const mounted: VueWrapper[] = [];

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  ({ fake, started, end: endJob } = fakeJobsConnection());
  replaceConnection(fake);
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info: imageInfo({ filename: PATH }), error: null, refreshing: false }];
});

afterEach(() => {
  for (const wrapper of mounted.splice(0)) wrapper.unmount();
  replaceConnection(null);
});

async function end(kind: string, outcome: JobOutcome): Promise<void> {
  endJob(kind, outcome);
  await flushPromises();
}

/** Unmounted after the test. */
function kept(wrapper: VueWrapper): VueWrapper {
  mounted.push(wrapper);
  return wrapper;
}

const onPage = () => ({ global: { plugins: [pinia] }, attachTo: document.body });

/** The panel at the root of the current state, with its dialogs' host beside it. */
async function openPanel(): Promise<{ pane: VueWrapper; host: VueWrapper }> {
  const pane = kept(mount(FilesPane, { props: { path: PATH, tree, selectedId: 'current', encrypted: false }, ...onPage() }));
  const host = kept(mount(DialogHost, onPage()));
  await flushPromises();
  await end('files.list', { result: lockedListing });
  return { pane, host };
}

const row = (pane: VueWrapper, name: string) => pane.get(`[data-testid="file-row"][data-name="${name}"]`);

async function giveVolumePassphrase(pane: VueWrapper, host: VueWrapper, passphrase: string): Promise<void> {
  await row(pane, '3').get('[data-testid="volume-unlock"]').trigger('click');
  await flushPromises();
  await host.get('[data-testid="volume-passphrase"]').setValue(passphrase);
  await host.get('[data-testid="volume-unlock-dialog"] form').trigger('submit');
  await flushPromises();
}

describe('an encrypted volume inside the guest', () => {
  it('shows its format, that it is locked and its label, and offers Unlock… (it does not open as a folder)', async () => {
    const { pane } = await openPanel();
    expect(row(pane, '2').get('[data-testid="volume-info"]').text()).toBe('LUKS2-encrypted · locked · “cryptroot” · 22 MiB');
    expect(row(pane, '3').get('[data-testid="volume-info"]').text()).toBe('LUKS1-encrypted · locked · 12 MiB');
    expect(row(pane, '3').get('[data-testid="volume-info"]').classes()).not.toContain('problem');
    expect(row(pane, '3').get('button.folder-name').attributes('disabled')).toBeDefined();
    expect(row(pane, '3').get('[data-testid="volume-unlock"]').text()).toBe('Unlock…');
    expect(row(pane, '3').get('[data-testid="volume-unlock"]').attributes('aria-label')).toBe('Unlock… (volume 3)');
    expect(row(pane, '1').find('[data-testid="volume-unlock"]').exists()).toBe(false);
  });

  it('unlocked: the passphrase goes with the listing, the dialog closes, and the volumes inside are listed and browsed with it', async () => {
    const { pane, host } = await openPanel();
    await giveVolumePassphrase(pane, host, RIGHT);
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { state: 'current', path: '/', volumePassphrases: [{ uuid: UUID_3, passphrase: RIGHT }] } });
    // Seconds of key derivation: the dialog says it is unlocking.
    expect(host.get('[data-testid="volume-unlock-dialog"]').attributes('data-phase')).toBe('running');
    expect(host.get('[data-testid="volume-unlocking"]').text()).toContain('Unlocking /3');
    await end('files.list', { result: unlockedListing });
    expect(useDialogsStore().current).toBeNull();
    expect(row(pane, '3').get('[data-testid="volume-info"]').text()).toBe('LUKS1-encrypted · unlocked · 12 MiB');
    expect(row(pane, '3').get('[data-icon]').attributes('data-icon')).toBe('unlock');
    expect(row(pane, '2').get('[data-icon]').attributes('data-icon')).toBe('lock');
    expect(row(pane, '3').find('[data-testid="volume-unlock"]').exists()).toBe(false);
    expect(row(pane, `luks-${UUID_3}`).get('[data-testid="volume-info"]').text()).toBe('ext2/3/4 · 10 MiB · inside /3');
    await row(pane, `luks-${UUID_3}`).get('button.folder-name').trigger('click');
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { path: `/luks-${UUID_3}`, volumePassphrases: [{ uuid: UUID_3, passphrase: RIGHT }] } });
  });

  it('compare and restore carry the disk’s volume passphrases too', async () => {
    const { pane, host } = await openPanel();
    await giveVolumePassphrase(pane, host, RIGHT);
    await end('files.list', { result: unlockedListing });
    kept(mount(CompareFilesDialog, { props: { path: PATH, from: '1', fromName: 'before', to: 'current', toName: 'Current state' }, ...onPage() }));
    await flushPromises();
    expect(started.at(-1)).toEqual({ id: expect.any(String), kind: 'files.diff', path: PATH, args: { from: '1', to: 'current', volumePassphrases: [{ uuid: UUID_3, passphrase: RIGHT }] } });
    const restore = kept(mount(RestoreFilesDialog, { props: { path: PATH, state: 'current', stateName: 'Current state', guestPath: `/luks-${UUID_3}/notes.txt`, entryKind: 'file' }, ...onPage() }));
    await flushPromises();
    await restore.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'files.copyOut', args: { path: `/luks-${UUID_3}/notes.txt`, volumePassphrases: [{ uuid: UUID_3, passphrase: RIGHT }] } });
  });

  it('a wrong passphrase keeps the dialog open saying why, and is not kept for the next job', async () => {
    const { pane, host } = await openPanel();
    await giveVolumePassphrase(pane, host, WRONG);
    await end('files.list', { result: rootListing([plain, cryptroot, wrong3]) });
    const dialog = host.get('[data-testid="volume-unlock-dialog"]');
    expect(dialog.attributes('data-phase')).toBe('setup');
    expect(host.get('[data-testid="volume-unlock-problem"]').text()).toContain(BAD_PASSPHRASE);
    // The field is emptied, has the focus back, and is described by the notice.
    const field = host.get('[data-testid="volume-passphrase"]');
    expect((field.element as HTMLInputElement).value).toBe('');
    expect(document.activeElement).toBe(field.element);
    expect(field.attributes('aria-invalid')).toBe('true');
    expect(document.getElementById(field.attributes('aria-describedby') ?? '')?.textContent).toContain(BAD_PASSPHRASE);
    expect(useGuestFilesStore().hasVolumePassphrase(PATH, UUID_3)).toBe(false);
    // Behind the dialog the volume reads as locked again, as a listing without the forgotten passphrase says.
    expect(row(pane, '3').get('[data-testid="volume-info"]').text()).toBe('LUKS1-encrypted · locked · 12 MiB');
    await row(pane, '1').get('button.folder-name').trigger('click');
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { path: '/1' } });
    expect(started.at(-1)!.args).not.toHaveProperty('volumePassphrases');
    // The right one then opens it.
    await host.get('[data-testid="volume-passphrase"]').setValue(RIGHT);
    await host.get('[data-testid="volume-unlock-dialog"] form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ args: { volumePassphrases: [{ uuid: UUID_3, passphrase: RIGHT }] } });
  });

  it('Cancel while unlocking stops the read, forgets the passphrase and lists the folder again without it', async () => {
    const { pane, host } = await openPanel();
    await giveVolumePassphrase(pane, host, RIGHT);
    const unlocking = started.at(-1)!;
    await host.get('[data-testid="dialog-cancel"]').trigger('click');
    await flushPromises();
    expect(fake.calls.filter((call) => call.name === 'job.cancel').map((call) => call.args)).toEqual([{ jobId: unlocking.id }]);
    await end('files.list', { error: { code: 'CANCELLED', message: 'cancelled' } });
    expect(started.at(-1)).toMatchObject({ kind: 'files.list', args: { path: '/' } });
    expect(started.at(-1)!.args).not.toHaveProperty('volumePassphrases');
    await end('files.list', { result: lockedListing });
    expect(host.get('[data-testid="volume-unlock-dialog"]').attributes('data-phase')).toBe('setup');
    expect(host.get('[data-testid="volume-unlock-problem"]').text()).toContain('Unlocking was cancelled.');
    expect(pane.get('[data-testid="files-pane"]').attributes('data-status')).toBe('ready');
  });

  it('keeps the passphrase in memory only: not in storage, not in reactive state, and gone when the disk is closed', async () => {
    localStorage.clear();
    sessionStorage.clear();
    const { pane, host } = await openPanel();
    await giveVolumePassphrase(pane, host, RIGHT);
    await end('files.list', { result: unlockedListing });
    expect(useGuestFilesStore().hasVolumePassphrase(PATH, UUID_3)).toBe(true);
    const stored = [localStorage, sessionStorage].flatMap((storage) => Object.keys(storage).map((key) => `${key}=${storage.getItem(key) ?? ''}`));
    expect(stored.join('\n')).not.toContain(RIGHT);
    expect(JSON.stringify(pinia.state.value)).not.toContain(RIGHT);
    expect(document.body.innerHTML).not.toContain(RIGHT);
    useLibraryStore().close(PATH);
    expect(useGuestFilesStore().hasVolumePassphrase(PATH, UUID_3)).toBe(false);
  });
});
