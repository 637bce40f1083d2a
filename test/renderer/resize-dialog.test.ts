/**
 * The Resize… dialog against a fake main: the size now and the new one, what it means for the
 * guest, for a shrink the data each state holds past the new end (asked of main), the explicit
 * choice to discard the current disk's, and what it sends.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageInfo, JobEnd, ResizePreview } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import App from '../../src/renderer/src/App.vue';
import DiskView from '../../src/renderer/src/components/DiskView.vue';
import ResizeDialog from '../../src/renderer/src/components/dialogs/ResizeDialog.vue';
import { exactSizeText, largestDiskBytes, newDiskSizeProblem, readNewSize } from '../../src/renderer/src/lib/resize-size.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, fakeElectronApp, imageInfo } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';
const GiB = 1024 ** 3;
const MiB = 1024 ** 2;

interface Started {
  id: string;
  kind: string;
  args: unknown;
}

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: Started[];
let info: ImageInfo;
let wrapper: VueWrapper | null = null;

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  started = [];
  info = imageInfo({ filename: PATH, 'virtual-size': 20 * GiB });
  fake = fakeConnection({
    'job.start': (request) => {
      const { kind, args } = request as { kind: string; args: unknown };
      const id = `job-${started.length + 1}`;
      started.push({ id, kind, args });
      return { jobId: id };
    },
    'job.cancel': () => ({ cancelled: true }),
    'image.open': () => info,
    'image.watch': () => null,
  });
  replaceConnection(fake);
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

function end(kind: string, result: unknown): void {
  const job = [...started].reverse().find((candidate) => candidate.kind === kind);
  if (!job) throw new Error(`no ${kind} job was started`);
  fake.emit('job.end', { jobId: job.id, ok: true, result } as JobEnd);
}

async function mountDialog(): Promise<VueWrapper> {
  wrapper = mount(ResizeDialog, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

async function typeSize(dialog: VueWrapper, text: string): Promise<void> {
  await dialog.get('[data-testid="resize-size"]').setValue(text);
  await flushPromises();
}

function submitButton(dialog: VueWrapper): HTMLButtonElement {
  return dialog.get('[data-testid="dialog-submit"]').element as HTMLButtonElement;
}

function shrinkPreview(currentBytes: number, snapshotBytes: number): ResizePreview {
  return {
    currentSize: 20 * GiB,
    newSize: 8 * GiB,
    direction: 'shrink',
    l1Grows: false,
    pastEnd: [
      ...(currentBytes > 0 ? [{ state: 'current' as const, id: null, name: null, diskSize: 20 * GiB, bytes: currentBytes, kept: false }] : []),
      ...(snapshotBytes > 0 ? [{ state: 'snapshot' as const, id: '1', name: 'fresh install', diskSize: 20 * GiB, bytes: snapshotBytes, kept: true }] : []),
    ],
  };
}

describe('the Resize dialog', () => {
  it('shows the size now, starts at it exactly, and explains a grow: the partition is grown inside the guest afterwards', async () => {
    const dialog = await mountDialog();
    expect(dialog.get('[data-testid="resize-current"]').text()).toBe('20 GiB');
    expect((dialog.get('[data-testid="resize-size"]').element as HTMLInputElement).value).toBe('20G');
    // At its own size there is nothing to do yet, and nothing wrong to say.
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(submitButton(dialog).disabled).toBe(true);

    await typeSize(dialog, '+12G');
    expect(dialog.get('[data-testid="resize-new"]').attributes('data-bytes')).toBe(String(32 * GiB));
    expect(dialog.get('[data-testid="resize-guest-grow"]').text()).toContain('grow the partition and its file system inside the guest afterwards');
    expect(dialog.get('[data-testid="resize-snapshots"]').text()).toBe('The 2 snapshots keep their own size: reverting to one brings its size back.');
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(submitButton(dialog).textContent?.trim()).toBe('Grow');
    // A grow asks main only whether the disk can take the new size (the tables are not read).
    expect(started).toEqual([{ id: 'job-1', kind: 'image.resizePreview', args: { size: 32 * GiB } }]);
    expect(submitButton(dialog).disabled).toBe(true);
    end('image.resizePreview', { currentSize: 20 * GiB, newSize: 32 * GiB, direction: 'grow', l1Grows: false, pastEnd: [] } satisfies ResizePreview);
    await flushPromises();
    expect(submitButton(dialog).disabled).toBe(false);

    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toEqual({ id: 'job-2', kind: 'image.resize', args: { size: 32 * GiB } });
  });

  it('says up front that a disk which cannot be resized cannot (compat 0.10 with snapshots, as qemu-img), Grow disabled (UI audit)', async () => {
    const dialog = await mountDialog();
    await typeSize(dialog, '+4G');
    const preview = started.find((job) => job.kind === 'image.resizePreview');
    fake.emit('job.end', { jobId: preview?.id ?? '', ok: false, error: { code: 'INVALID_ARGUMENT', message: 'A compat 0.10 (qcow2 v2) disk with snapshots cannot be resized: its snapshots do not record their own disk size' } });
    await flushPromises();
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('A compat 0.10 (qcow2 v2) disk with snapshots cannot be resized: its snapshots do not record their own disk size');
    expect(submitButton(dialog).disabled).toBe(true);
    // Not "the snapshots keep their own size", which a v2 snapshot does not.
    expect(dialog.find('[data-testid="resize-snapshots"]').exists()).toBe(false);
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.filter((job) => job.kind === 'image.resize')).toEqual([]);
  });

  it('refuses sizes that are not sizes, and whole-sector rules, before asking main anything', async () => {
    const dialog = await mountDialog();
    await typeSize(dialog, 'big');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('number with a unit');
    await typeSize(dialog, '1000');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('512-byte sectors');
    await typeSize(dialog, '-30G');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toBe('The new size must be larger than zero.');
    expect(submitButton(dialog).disabled).toBe(true);
    expect(started).toEqual([]);
  });

  it('for a shrink lists the data past the new end in each state, and sends discardData only once it is chosen', async () => {
    const dialog = await mountDialog();
    await typeSize(dialog, '8G');
    expect(started.at(-1)).toMatchObject({ kind: 'image.resizePreview', args: { size: 8 * GiB } });
    expect(dialog.get('[data-testid="resize-guest-shrink"]').text()).toContain('Shrink the file system and its partition inside the guest first');
    expect(dialog.find('[data-testid="resize-reading"]').exists()).toBe(true);
    expect(submitButton(dialog).disabled).toBe(true);

    end('image.resizePreview', shrinkPreview(300 * MiB, 64 * MiB));
    await flushPromises();
    expect(dialog.get('[data-testid="resize-past-end-current"]').text()).toContain('300 MiB');
    expect(dialog.get('[data-testid="resize-past-end-snapshot"]').text()).toBe('Snapshot “fresh install” holds 64 MiB there: kept, as a snapshot keeps its own size (20 GiB).');
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('holds 300 MiB of data past the new end');
    expect(submitButton(dialog).disabled).toBe(true);

    await dialog.get('[data-testid="resize-discard"]').setValue(true);
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(submitButton(dialog).textContent?.trim()).toBe('Shrink and Discard');
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.resize', args: { size: 8 * GiB, shrink: true, discardData: true } });
  });

  it('keeps the choice to discard across a re-read of the disk that finds the same amount, and asks again for another (the e2e test met the library re-reading after the grow)', async () => {
    const dialog = await mountDialog();
    await typeSize(dialog, '8G');
    end('image.resizePreview', shrinkPreview(300 * MiB, 64 * MiB));
    await flushPromises();
    await dialog.get('[data-testid="resize-discard"]').setValue(true);
    expect(submitButton(dialog).disabled).toBe(false);

    // The library re-reads the disk (a job ended, another program touched it): the answer stays in view, nothing is sent meanwhile.
    const library = useLibraryStore();
    library.disks = [{ path: PATH, status: 'ready', info: { ...info }, error: null, refreshing: false }];
    await flushPromises();
    expect(started.filter((job) => job.kind === 'image.resizePreview')).toHaveLength(2);
    expect(dialog.get('[data-testid="resize-past-end-current"]').text()).toContain('300 MiB');
    expect(submitButton(dialog).disabled).toBe(true);
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.some((job) => job.kind === 'image.resize')).toBe(false);

    end('image.resizePreview', shrinkPreview(300 * MiB, 64 * MiB));
    await flushPromises();
    expect((dialog.get('[data-testid="resize-discard"]').element as HTMLInputElement).checked).toBe(true);
    expect(dialog.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(submitButton(dialog).disabled).toBe(false);

    // Another program wrote more past the end: the choice was for 300 MiB, so it is asked again.
    library.disks = [{ path: PATH, status: 'ready', info: { ...info }, error: null, refreshing: false }];
    await flushPromises();
    end('image.resizePreview', shrinkPreview(310 * MiB, 64 * MiB));
    await flushPromises();
    expect((dialog.get('[data-testid="resize-discard"]').element as HTMLInputElement).checked).toBe(false);
    expect(dialog.get('[data-testid="dialog-problem"]').text()).toContain('holds 310 MiB of data past the new end');
    expect(submitButton(dialog).disabled).toBe(true);
    await dialog.get('[data-testid="resize-discard"]').setValue(true);
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.resize', args: { size: 8 * GiB, shrink: true, discardData: true, discardBytes: 310 * MiB } });
  });

  it('shrinks without discarding when only snapshots hold data past the end', async () => {
    const dialog = await mountDialog();
    await typeSize(dialog, '8G');
    end('image.resizePreview', shrinkPreview(0, 64 * MiB));
    await flushPromises();
    expect(dialog.get('[data-testid="resize-past-end-none"]').text()).toBe('The current disk holds no data past the new end.');
    expect(dialog.find('[data-testid="resize-discard"]').exists()).toBe(false);
    expect(submitButton(dialog).textContent?.trim()).toBe('Shrink');
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toEqual({ id: 'job-2', kind: 'image.resize', args: { size: 8 * GiB, shrink: true } });
  });

  it('asks for an encrypted disk’s passphrase only when the job needs it (LOCKED), then sends it with the retry', async () => {
    const dialog = await mountDialog();
    await typeSize(dialog, '24G');
    end('image.resizePreview', { currentSize: 20 * GiB, newSize: 24 * GiB, direction: 'grow', l1Grows: false, pastEnd: [] } satisfies ResizePreview);
    await flushPromises();
    await dialog.get('form').trigger('submit');
    await flushPromises();
    expect(started.filter((candidate) => candidate.kind === 'image.resize')).toEqual([{ id: 'job-2', kind: 'image.resize', args: { size: 24 * GiB } }]);
    const job = started.at(-1);
    fake.emit('job.end', { jobId: job?.id ?? '', ok: false, error: { code: 'LOCKED', message: 'The disk is encrypted: unlock it with its passphrase' } } as JobEnd);
    await flushPromises();
    const field = document.body.querySelector<HTMLInputElement>('[data-testid="unlock-dialog"] [data-testid="unlock-passphrase"]');
    expect(field).not.toBeNull();
    if (field === null) return;
    field.value = 'moo moo';
    field.dispatchEvent(new Event('input'));
    await flushPromises();
    document.body.querySelector<HTMLFormElement>('[data-testid="unlock-dialog"] form')?.dispatchEvent(new Event('submit', { cancelable: true }));
    await flushPromises();
    expect(started.filter((candidate) => candidate.kind === 'image.resize').map((candidate) => candidate.args)).toEqual([{ size: 24 * GiB }, { size: 24 * GiB, passphrase: 'moo moo' }]);
    expect(dialog.emitted('close')).toBeUndefined();
    end('image.resize', { previousSize: 20 * GiB, newSize: 24 * GiB, l1Grown: false, discardedBytes: 0 });
    await flushPromises();
    expect(dialog.emitted('close')).toHaveLength(1);
  });

  it('is offered beside Compact…, disabled with the reason on a disk Cowbell must not write', async () => {
    const readOnly = { path: PATH, status: 'ready' as const, info: imageInfo({ filename: PATH, 'read-only-reason': 'in use by another program' }), error: null, refreshing: false };
    useLibraryStore().disks = [readOnly];
    wrapper = mount(DiskView, { props: { disk: readOnly }, global: { plugins: [pinia] } });
    await flushPromises();
    const button = wrapper.get('[data-testid="resize-button"]');
    expect((button.element as HTMLButtonElement).disabled).toBe(true);
    expect(button.element.parentElement?.getAttribute('title')).toBe('Read-only: in use by another program');
  });
});

describe('File > Resize Disk…', () => {
  it('opens the dialog for the disk shown', async () => {
    const app = fakeElectronApp({ 'job.start': () => ({ jobId: 'job-1' }) });
    replaceConnection(app);
    localStorage.clear();
    const shell = mount(App, { global: { plugins: [createPinia()] }, attachTo: document.body });
    try {
      await flushPromises();
      app.emit('menu.command', { command: 'open-path', path: '/disks/grow.qcow2' });
      await flushPromises();
      app.emit('menu.command', { command: 'disk.resize' });
      await flushPromises();
      expect(shell.get('[data-testid="dialog-title"]').text()).toBe('Resize grow.qcow2');
    } finally {
      shell.unmount();
    }
  });
});

describe('the size field', () => {
  it('reads absolute sizes and changes, and starts from an exact text', () => {
    expect(readNewSize('40G', GiB)).toEqual({ ok: true, bytes: 40 * GiB });
    expect(readNewSize(' +512M ', GiB)).toEqual({ ok: true, bytes: GiB + 512 * MiB });
    expect(readNewSize('-512M', GiB)).toEqual({ ok: true, bytes: 512 * MiB });
    expect(readNewSize('1.5G', GiB)).toEqual({ ok: true, bytes: 1.5 * GiB });
    expect(readNewSize('-1G', GiB).ok).toBe(false);
    expect(readNewSize('', GiB).ok).toBe(false);
    expect(exactSizeText(20 * GiB)).toBe('20G');
    expect(exactSizeText(1536 * MiB)).toBe('1536M');
    expect(exactSizeText(1000448)).toBe('977K');
    expect(exactSizeText(1000448 + 512)).toBe('1000960');
  });

  it('says what is wrong with a size typed: its form, or its size (UI audit: 9999999T was told to be written with a unit)', () => {
    expect(readNewSize('9999999T', GiB)).toEqual({ ok: false, problem: 'That is larger than a qcow2 disk can be.' });
    expect(readNewSize('+9999999T', GiB)).toEqual({ ok: false, problem: 'That is larger than a qcow2 disk can be.' });
    expect(readNewSize('forty', GiB)).toEqual({ ok: false, problem: 'Write the size as a number with a unit: 40G, +10G, 1.5T.' });
  });

  it('says that a bare number is bytes where it makes no whole sector (UI audit: "10" was told to round to a sector, not that it meant 10 bytes)', () => {
    expect(readNewSize('10', GiB)).toEqual({ ok: false, problem: 'A disk’s size is a whole number of 512-byte sectors. A number without a unit is bytes: write 10G for 10 GiB.' });
    expect(readNewSize('+10', GiB)).toEqual({ ok: false, problem: 'A disk’s size is a whole number of 512-byte sectors. A number without a unit is bytes: write 10G for 10 GiB.' });
    expect(readNewSize('1.1K', GiB)).toEqual({ ok: false, problem: 'A disk’s size is a whole number of 512-byte sectors: round it to one.' });
  });

  it('for a new disk: at least a sector, at most what its cluster size can map (QEMU\'s 32 MiB L1 table)', () => {
    expect(newDiskSizeProblem('20G', 65536)).toBeNull();
    expect(newDiskSizeProblem('512', 65536)).toBeNull();
    expect(newDiskSizeProblem('511', 65536)).toBe('A disk is at least 512 bytes (one sector). A number without a unit is bytes: write 511G for 511 GiB.');
    expect(newDiskSizeProblem('10', 65536)).toBe('A disk is at least 512 bytes (one sector). A number without a unit is bytes: write 10G for 10 GiB.');
    expect(newDiskSizeProblem('10K', 65536)).toBeNull();
    // A fraction of a byte is no size too large (it was called one).
    expect(newDiskSizeProblem('1.1K', 65536)).toBe('A disk’s size is a whole number of 512-byte sectors: round it to one.');
    expect(newDiskSizeProblem('1000.5', 65536)).toBe('A disk’s size is a whole number of 512-byte sectors: round it to one.');
    expect(newDiskSizeProblem('big', 65536)).toBe('Write the size as a number with a unit: 512M, 20G, 1.5T.');
    expect(newDiskSizeProblem('99999999999T', 65536)).toBe('That is larger than a qcow2 disk can be.');
    // 4 KiB clusters map 8 TiB at most (4 Mi L1 entries of 2 MiB each), as qemu-img create refuses past it.
    expect(largestDiskBytes(4096)).toBe(8 * 2 ** 40);
    expect(newDiskSizeProblem('8T', 4096)).toBeNull();
    expect(newDiskSizeProblem('100T', 4096)).toBe('That is larger than a disk with 4 KiB clusters can be: choose larger clusters, or a smaller size.');
    expect(largestDiskBytes(65536)).toBe(2 ** 51);
    expect(largestDiskBytes(2 * 1024 * 1024)).toBe(2 ** 52);
  });
});
