/**
 * The backing chain above the snapshot tree and its three dialogs against a fake main: the files
 * shown (a missing one by name), and the job each dialog starts with which arguments.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { DefineComponent } from 'vue';
import type { JobEnd } from '../../src/shared/ipc/contract.ts';
import type { BackingChain, ChainFile } from '../../src/shared/qcow2/model.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import BackingChainPane from '../../src/renderer/src/components/tree/BackingChainPane.vue';
import CommitDialog from '../../src/renderer/src/components/dialogs/CommitDialog.vue';
import LinkedCloneDialog from '../../src/renderer/src/components/dialogs/LinkedCloneDialog.vue';
import RebaseDialog from '../../src/renderer/src/components/dialogs/RebaseDialog.vue';
import RewriteDialog from '../../src/renderer/src/components/dialogs/RewriteDialog.vue';
import { useDialogsStore } from '../../src/renderer/src/stores/dialogs.ts';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, imageInfo } from './fixtures.ts';
import { describeCommit } from '../../src/renderer/src/lib/describe-chain.ts';

const PATH = '/disks/clone.qcow2';
const MiB = 1024 * 1024;

function file(overrides: Partial<ChainFile>): ChainFile {
  return { path: '/disks/x.qcow2', name: 'x.qcow2', format: 'qcow2', declaredFormat: 'qcow2', virtualSize: 1024 * MiB, fileSize: 300 * MiB, allocatedBytes: 290 * MiB, encrypted: false, snapshots: [], problem: null, ...overrides };
}

const healthy: BackingChain = {
  complete: true,
  files: [
    file({ path: PATH, name: PATH, declaredFormat: null }),
    file({ path: '/disks/base.qcow2', name: 'base.qcow2', snapshots: [{ id: '1', name: 'installed', 'date-sec': 1764085682, 'vm-state-size': 0 }] }),
    file({ path: '/disks/golden.raw', name: 'golden.raw', format: 'raw', declaredFormat: 'raw' }),
  ],
};

const missing: BackingChain = {
  complete: false,
  files: [
    file({ path: PATH, name: PATH, declaredFormat: null }),
    file({ path: '/disks/gone.qcow2', name: 'gone.qcow2', format: null, virtualSize: null, fileSize: null, allocatedBytes: null, problem: { kind: 'missing', message: 'The backing file gone.qcow2 does not exist' } }),
  ],
};

let pinia: Pinia;
let started: { kind: string; path: string; args: unknown }[];
let wrapper: VueWrapper | null = null;
let fake: ReturnType<typeof fakeConnection>;

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  started = [];
  fake = fakeConnection({
    'job.start': (request) => {
      const { kind, path, args } = request as { kind: string; path: string; args: unknown };
      started.push({ kind, path, args });
      return { jobId: `job-${started.length}` };
    },
    'image.watch': () => null,
  });
  replaceConnection(fake);
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info: imageInfo({ filename: PATH }), error: null, refreshing: false }];
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

function withChain(chain: BackingChain): void {
  useDiskDataStore().entry(PATH).chain = chain;
}

/** Every component here takes the disk's path and nothing else. */
type PathComponent = DefineComponent<{ path: string }>;

async function mountWith(component: unknown, chain: BackingChain): Promise<VueWrapper> {
  withChain(chain);
  wrapper = mount(component as PathComponent, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

describe('the backing chain pane', () => {
  it('lists the files below the disk, top to bottom, with format, space and their own snapshots', async () => {
    const pane = await mountWith(BackingChainPane, healthy);
    const rows = pane.findAll('[data-testid^="chain-file-"][data-problem]');
    expect(rows.map((row) => row.find('.file-name').text())).toEqual(['base.qcow2', 'golden.raw']);
    expect(rows[0]?.text()).toContain('qcow2 · 1 GiB disk · 290 MiB on disk · 1 snapshot');
    expect(pane.get('[data-testid="chain-file-0-snapshots"]').text()).toBe('installed');
    expect(rows[1]?.text()).toContain('raw');
    expect(pane.get('[data-testid="commit-button"]').attributes('disabled')).toBeUndefined();
  });

  it('names a missing backing file and disables commit, keeping rebase (to point the disk at the file’s new place)', async () => {
    const pane = await mountWith(BackingChainPane, missing);
    const row = pane.get('[data-testid="chain-file-0"]');
    expect(row.attributes('data-problem')).toBe('missing');
    expect(row.text()).toContain('The backing file gone.qcow2 does not exist');
    expect(pane.get('[data-testid="commit-button"]').attributes('disabled')).toBeDefined();
    expect(pane.get('[data-testid="rebase-button"]').attributes('disabled')).toBeUndefined();
  });

  it('says when there is no backing file, and still offers a linked clone', async () => {
    const pane = await mountWith(BackingChainPane, { complete: true, files: [file({ path: PATH, name: PATH })] });
    expect(pane.get('[data-testid="chain-none"]').text()).toContain('no backing file');
    await pane.get('[data-testid="linked-clone-button"]').trigger('click');
    expect(useDialogsStore().current).toEqual({ kind: 'linked-clone', path: PATH });
  });
});

describe('the chain dialogs start their jobs', () => {
  it('New linked clone: image.create at the new path with this disk as its backing file', async () => {
    const dialog = await mountWith(LinkedCloneDialog, healthy);
    expect((dialog.get('[data-testid="linked-clone-path"]').element as HTMLInputElement).value).toBe('/disks/clone-clone.qcow2');
    await dialog.get('[data-testid="linked-clone-path"]').setValue('/disks/web-1.qcow2');
    await dialog.get('form').trigger('submit');
    // Its format is said, not left to be guessed: the app opens qcow2 disks only.
    expect(started).toEqual([{ kind: 'image.create', path: '/disks/web-1.qcow2', args: { backingFile: PATH, backingFormat: 'qcow2' } }]);
    expect(dialog.find('[data-testid="linked-clone-unencrypted"]').exists()).toBe(false);
  });

  it('New linked clone of an encrypted disk says the clone itself will not be encrypted', async () => {
    const dialog = await mountWith(LinkedCloneDialog, healthy);
    useLibraryStore().disks = [{ path: PATH, status: 'ready', info: imageInfo({ filename: PATH, encrypted: true }), error: null, refreshing: false }];
    await flushPromises();
    expect(dialog.get('[data-testid="linked-clone-unencrypted"]').text()).toContain('the clone will not be: what the VM writes to the clone is stored unencrypted');
  });

  it('Commit: chain.commit, the disk emptied unless kept', async () => {
    const dialog = await mountWith(CommitDialog, healthy);
    expect(dialog.get('[data-testid="commit-backing"]').text()).toBe('base.qcow2');
    await dialog.get('[data-testid="commit-keep"]').setValue(true);
    await dialog.get('form').trigger('submit');
    // The file the dialog named goes with the job: a disk rebased meanwhile is refused, not committed elsewhere.
    expect(started).toEqual([{ kind: 'chain.commit', path: PATH, args: { keepOverlay: true, backingFile: '/disks/base.qcow2' } }]);
  });

  it('Commit names the other open disks built on the same backing file (audit: it only said “any other disk”)', async () => {
    const dialog = await mountWith(CommitDialog, healthy);
    expect(dialog.find('[data-testid="commit-other-clones"]').exists()).toBe(false);
    wrapper?.unmount();
    const sibling = '/disks/web-2.qcow2';
    useDiskDataStore().entry(sibling).chain = { complete: true, files: [file({ path: sibling, name: sibling, declaredFormat: null }), file({ path: '/disks/base.qcow2', name: 'base.qcow2' })] };
    const named = await mountWith(CommitDialog, healthy);
    expect(named.get('[data-testid="commit-other-clones"]').text()).toContain('web-2.qcow2 is also built on base.qcow2');
    // A clone of this disk reads the same after the commit (what it read here is then in the backing file): not named (UI audit).
    named.unmount();
    const ownClone = '/disks/clone-of-this.qcow2';
    useDiskDataStore().entry(ownClone).chain = { complete: true, files: [file({ path: ownClone, name: ownClone, declaredFormat: null }), file({ path: PATH, name: 'clone.qcow2' }), file({ path: '/disks/base.qcow2', name: 'base.qcow2' })] };
    const again = await mountWith(CommitDialog, healthy);
    expect(again.get('[data-testid="commit-other-clones"]').text()).not.toContain('clone-of-this.qcow2');
    expect(again.get('[data-testid="commit-other-clones"]').text()).toContain('web-2.qcow2');
  });

  it('Commit refuses a broken chain and says which file is missing', async () => {
    const dialog = await mountWith(CommitDialog, missing);
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('gone.qcow2 does not exist');
    await dialog.get('form').trigger('submit');
    expect(started).toEqual([]);
  });

  it('Rebase on a chain broken further down offers no file (with -u the one below would skip the backing file’s data), and is a dangerous action (audit)', async () => {
    const brokenBelow: BackingChain = {
      complete: false,
      files: [
        file({ path: PATH, name: PATH, declaredFormat: null }),
        file({ path: '/disks/mid.qcow2', name: 'mid.qcow2' }),
        file({ path: '/disks/low.qcow2', name: 'low.qcow2' }),
        file({ path: '/disks/gone.qcow2', name: 'gone.qcow2', format: null, virtualSize: null, fileSize: null, allocatedBytes: null, problem: { kind: 'missing', message: 'The backing file gone.qcow2 does not exist' } }),
      ],
    };
    const dialog = await mountWith(RebaseDialog, brokenBelow);
    expect((dialog.get('[data-testid="rebase-unsafe"]').element as HTMLInputElement).checked).toBe(true);
    expect((dialog.get('[data-testid="rebase-target"]').element as HTMLInputElement).value).toBe('');
    expect(dialog.get('[data-testid="dialog-submit"]').classes()).toContain('danger');
    await dialog.get('form').trigger('submit');
    expect(started.filter((job) => job.kind === 'chain.rebase')).toEqual([]);
  });

  it('Rebase takes its suggestion back when “only change the name” is ticked by hand (audit)', async () => {
    const dialog = await mountWith(RebaseDialog, healthy);
    expect((dialog.get('[data-testid="rebase-target"]').element as HTMLInputElement).value).toBe('/disks/golden.raw');
    await dialog.get('[data-testid="rebase-unsafe"]').setValue(true);
    expect((dialog.get('[data-testid="rebase-target"]').element as HTMLInputElement).value).toBe('');
    expect(dialog.get('[data-testid="dialog-submit"]').attributes('disabled')).toBeDefined();
  });

  it('Rebase: safe onto the file below the backing file by default, or onto nothing', async () => {
    const dialog = await mountWith(RebaseDialog, healthy);
    expect((dialog.get('[data-testid="rebase-target"]').element as HTMLInputElement).value).toBe('/disks/golden.raw');
    await dialog.get('form').trigger('submit');
    // With the format the chain records for that file, shown in the dialog.
    expect((dialog.get('[data-testid="rebase-format"]').element as HTMLSelectElement).value).toBe('raw');
    expect(started.at(-1)).toEqual({ kind: 'chain.rebase', path: PATH, args: { backingFile: '/disks/golden.raw', backingFormat: 'raw', unsafe: false } });
  });

  it('Rebase refuses to record a file that is not a qcow2 image as qcow2 (the disk could not be opened: with -u nothing checks it), and sends the format chosen', async () => {
    const dialog = await mountWith(RebaseDialog, healthy);
    await dialog.get('[data-testid="rebase-unsafe"]').setValue(true);
    await dialog.get('[data-testid="rebase-target"]').setValue('/disks/golden.raw');
    await dialog.get('[data-testid="rebase-format"]').setValue('qcow2');
    expect(dialog.get('[data-testid="rebase-format-mismatch"]').text()).toContain('not a qcow2 image');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('the disk could not be opened. Choose raw.');
    await dialog.get('form').trigger('submit');
    expect(started.filter((job) => job.kind === 'chain.rebase')).toEqual([]);
    await dialog.get('[data-testid="rebase-format"]').setValue('raw');
    await dialog.get('form').trigger('submit');
    expect(started.at(-1)).toEqual({ kind: 'chain.rebase', path: PATH, args: { backingFile: '/disks/golden.raw', backingFormat: 'raw', unsafe: true } });
  });

  it('Rebase with a missing backing file: only the name can change, and the dialog starts that way', async () => {
    const dialog = await mountWith(RebaseDialog, missing);
    expect(dialog.get('[data-testid="rebase-broken"]').text()).toContain('gone.qcow2');
    expect((dialog.get('[data-testid="rebase-unsafe"]').element as HTMLInputElement).checked).toBe(true);
    await dialog.get('[data-testid="rebase-target"]').setValue('/mnt/new-place/gone.qcow2');
    await dialog.get('form').trigger('submit');
    expect(started.at(-1)).toEqual({ kind: 'chain.rebase', path: PATH, args: { backingFile: '/mnt/new-place/gone.qcow2', backingFormat: 'qcow2', unsafe: true } });
  });

  it('Rebase refuses, before it starts, a disk built on this one as the new backing file (a loop the job refused only once started: UI audit)', async () => {
    const clone = '/disks/clone-of-this.qcow2';
    useDiskDataStore().entry(clone).chain = { complete: true, files: [file({ path: clone, name: clone, declaredFormat: null }), file({ path: PATH, name: 'clone.qcow2' }), file({ path: '/disks/base.qcow2', name: 'base.qcow2' })] };
    const dialog = await mountWith(RebaseDialog, healthy);
    await dialog.get('[data-testid="rebase-target"]').setValue(clone);
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('clone-of-this.qcow2 is built on this disk: as its backing file it would make a loop.');
    await dialog.get('form').trigger('submit');
    expect(started.filter((job) => job.kind === 'chain.rebase')).toEqual([]);
  });

  it('Rebase onto nothing is refused in name-only mode (the data would be lost)', async () => {
    const dialog = await mountWith(RebaseDialog, missing);
    await dialog.get('[data-testid="rebase-none"]').setValue(true);
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('would be lost');
  });
});

describe('what a finished commit says', () => {
  it('names the base, the bytes written, and a base grown to the disk’s size first', () => {
    const base = { base: '/disks/base.qcow2', committedBytes: 2 * 1024 * 1024, emptied: true };
    expect(describeCommit({ ...base, grownFrom: null })).toBe('Wrote 2 MiB into base.qcow2; the disk is empty now and reads everything from it.');
    expect(describeCommit({ ...base, grownFrom: 1024 * 1024 * 1024, emptied: false })).toBe('Wrote 2 MiB into base.qcow2 (grown from 1 GiB to the disk\'s size first); the disk keeps its own data.');
  });
});

describe('Encrypt… on a disk with backing files', () => {
  async function mountEncrypt(chain: BackingChain | null, mode: 'encrypt' | 'compact' = 'encrypt'): Promise<VueWrapper> {
    if (chain !== null) withChain(chain);
    wrapper = mount(RewriteDialog, { props: { path: PATH, mode }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    return wrapper;
  }

  it('names the files below that keep their data in the clear (not an encrypted one), and says nothing for a disk without any', async () => {
    const mixed: BackingChain = { complete: true, files: [...healthy.files.slice(0, 2), file({ path: '/disks/locked.qcow2', name: 'locked.qcow2', encrypted: true }), ...healthy.files.slice(2)] };
    const view = await mountEncrypt(mixed);
    expect(view.get('[data-testid="encrypt-clear-backing"]').text()).toContain('This disk reads through base.qcow2, golden.raw, which keep their data in the clear.');
    view.unmount();
    const alone: BackingChain = { complete: true, files: [file({ path: PATH, name: PATH, declaredFormat: null })] };
    expect((await mountEncrypt(alone)).find('[data-testid="encrypt-clear-backing"]').exists()).toBe(false);
    wrapper?.unmount();
    // Only encrypting says it: compacting changes nothing about who can read what.
    expect((await mountEncrypt(healthy, 'compact')).find('[data-testid="encrypt-clear-backing"]').exists()).toBe(false);
  });
});

describe('the commit and rebase dialogs ask for the passphrase when an encrypted file of the chain needs it', () => {
  /** The last chain job started ends with `end` (a job's id is its place in `started`; the disk's re-reads start jobs too). */
  function endLast(end: { ok: true; result: unknown } | { ok: false; error: { code: string; message: string } }): void {
    const index = started.findLastIndex((job) => job.kind.startsWith('chain.'));
    fake.emit('job.end', { jobId: `job-${index + 1}`, ...end } as JobEnd);
  }

  const unlockDialog = (): HTMLElement | null => document.body.querySelector<HTMLElement>('[data-testid="unlock-dialog"]');

  async function typePassphrase(passphrase: string): Promise<void> {
    const field = document.body.querySelector<HTMLInputElement>('[data-testid="unlock-dialog"] [data-testid="unlock-passphrase"]');
    if (field === null) throw new Error('no passphrase field');
    field.value = passphrase;
    field.dispatchEvent(new Event('input'));
    await flushPromises();
    document.body.querySelector<HTMLFormElement>('[data-testid="unlock-dialog"] form')?.dispatchEvent(new Event('submit', { cancelable: true }));
    await flushPromises();
  }

  it('Commit: LOCKED opens the Unlock dialog (about the chain, the jobs panel left shut); the passphrase goes with the retry; a wrong one asks again; cancel starts nothing more', async () => {
    const dialog = await mountWith(CommitDialog, healthy);
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ kind: 'chain.commit', path: PATH, args: { keepOverlay: false, backingFile: '/disks/base.qcow2' } }]);
    expect(unlockDialog()).toBeNull();
    endLast({ ok: false, error: { code: 'LOCKED', message: '/disks/base.qcow2 is encrypted: commit and rebase read and write its data, so they need its passphrase' } });
    await flushPromises();
    expect(unlockDialog()?.dataset.reason).toBe('LOCKED');
    expect(unlockDialog()?.textContent).toContain('clone.qcow2 or a file of its backing chain is encrypted: Cowbell needs the passphrase to commit it');
    expect(useJobsStore().panelOpen).toBe(false);
    expect(dialog.emitted('close')).toBeUndefined();
    await typePassphrase('moo moo moo');
    expect(started.filter((job) => job.kind === 'chain.commit').map((job) => job.args)).toEqual([
      { keepOverlay: false, backingFile: '/disks/base.qcow2' },
      { keepOverlay: false, backingFile: '/disks/base.qcow2', passphrase: 'moo moo moo' },
    ]);
    endLast({ ok: false, error: { code: 'BAD_PASSPHRASE', message: 'The passphrase does not open the backing file /disks/base.qcow2' } });
    await flushPromises();
    expect(unlockDialog()?.dataset.reason).toBe('BAD_PASSPHRASE');
    expect(document.body.querySelector('[data-testid="unlock-wrong"]')).not.toBeNull();
    document.body.querySelector<HTMLButtonElement>('[data-testid="unlock-dialog"] [data-testid="dialog-cancel"]')?.click();
    await flushPromises();
    expect(unlockDialog()).toBeNull();
    expect(started.filter((job) => job.kind === 'chain.commit')).toHaveLength(2);
    expect(dialog.emitted('close')).toBeUndefined();
  });

  it('Rebase: LOCKED, then the passphrase sent with the retry, and the dialog closes when the job is done', async () => {
    const dialog = await mountWith(RebaseDialog, healthy);
    await dialog.get('[data-testid="rebase-none"]').setValue(true);
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ kind: 'chain.rebase', path: PATH, args: { unsafe: false } }]);
    endLast({ ok: false, error: { code: 'LOCKED', message: '/disks/base.qcow2 is encrypted' } });
    await flushPromises();
    expect(unlockDialog()?.textContent).toContain('needs the passphrase to rebase it');
    await typePassphrase('moo moo moo');
    expect(started.filter((job) => job.kind === 'chain.rebase').at(-1)).toEqual({ kind: 'chain.rebase', path: PATH, args: { unsafe: false, passphrase: 'moo moo moo' } });
    expect(dialog.emitted('close')).toBeUndefined();
    endLast({ ok: true, result: { comparedBytes: 1024, copiedBytes: 512 } });
    await flushPromises();
    expect(dialog.emitted('close')).toHaveLength(1);
  });
});
