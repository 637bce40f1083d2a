/**
 * The Compress…, Compact… and Save as New Disk… dialogs against a fake main: what they show before
 * a job (the estimate, free space, the choices, why they cannot run), what they send, how they
 * follow the job (steps, bytes, rate, cancel) and what they say at its end.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageInfo, RewritePreview, RewriteSummary } from '../../src/shared/ipc/contract.ts';
import { BITMAPS_READ_ONLY_REASON, type SnapshotNode } from '../../src/shared/qcow2/model.ts';
import { formatBytes } from '../../src/shared/format-units.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import DiskView from '../../src/renderer/src/components/DiskView.vue';
import RewriteDialog from '../../src/renderer/src/components/dialogs/RewriteDialog.vue';
import SaveSnapshotDialog, { proposedName } from '../../src/renderer/src/components/dialogs/SaveSnapshotDialog.vue';
import { spaceVerdict } from '../../src/renderer/src/lib/describe-rewrite.ts';
import { useAppStore } from '../../src/renderer/src/stores/app.ts';
import { useDiskActions } from '../../src/renderer/src/stores/disk-actions.ts';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { CONNECTION_LOST, useSnapshotActions } from '../../src/renderer/src/stores/snapshot-actions.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeJobsConnection, imageInfo, type fakeConnection, type JobOutcome, type StartedJob } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';
const MiB = 1024 * 1024;

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: StartedJob[];
let end: (kind: string, outcome: JobOutcome) => void;
let info: ImageInfo;
let wrapper: VueWrapper | null = null;

/** A disk without compressed clusters in any state. */
const NO_COMPRESSED_DATA = { clusters: 0, storedBytes: 0, guestBytes: 0, inCurrent: false, inSnapshots: 0 };

function preview(overrides: Partial<RewritePreview> = {}): RewritePreview {
  return { fileBytes: 800 * MiB, expectedBytes: 350 * MiB, maxBytes: 790 * MiB, sampledClusters: 64, freeBytes: 40 * 1024 * MiB, snapshots: 2, compressed: NO_COMPRESSED_DATA, ...overrides };
}

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  info = imageInfo({ filename: PATH, 'actual-size': 800 * MiB });
  ({ fake, started, end } = fakeJobsConnection({
    'image.open': () => info,
    'image.watch': () => null,
    // A folder is any path without an extension, except under /nowhere; files exist where named "taken".
    'path.stat': (args) => (args as { paths: string[] }).paths.map((path) => ({ path, kind: path.includes('taken') ? 'file' : path.startsWith('/nowhere') || /\.[a-z0-9]+$/i.test(path) ? 'missing' : 'folder' })),
  }));
  replaceConnection(fake);
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

async function mountRewrite(mode: 'compress' | 'compact'): Promise<VueWrapper> {
  wrapper = mount(RewriteDialog, { props: { path: PATH, mode }, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

function text(view: VueWrapper, testId: string): string {
  return view.get(`[data-testid="${testId}"]`).text();
}

function submitDisabled(view: VueWrapper): boolean {
  return (view.get('[data-testid="dialog-submit"]').element as HTMLButtonElement).disabled;
}

describe('the Compress… dialog', () => {
  it('with nothing sampled (an empty or encrypted disk) gives the upper bound and says why, not "an estimate from 0 clusters"', async () => {
    const view = await mountRewrite('compact');
    end('image.rewritePreview', { result: preview({ sampledClusters: 0, expectedBytes: 790 * MiB }) });
    await flushPromises();
    expect(text(view, 'rewrite-estimate-note')).not.toContain('0 sampled');
    expect(text(view, 'rewrite-estimate-note')).toContain('No data was sampled');
    expect(text(view, 'rewrite-estimate-note')).toContain('no larger than 790 MiB');
  });

  it('shows the file now, the estimate after (as an estimate) and the free space, and that every snapshot is kept', async () => {
    const view = await mountRewrite('compress');
    expect(started).toEqual([{ id: 'job-1', kind: 'image.rewritePreview', path: PATH, args: { compression: 'compress', compressionType: 'zlib' } }]);
    expect(submitDisabled(view)).toBe(true);
    expect(text(view, 'rewrite-size-after')).toContain('estimating');

    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(text(view, 'rewrite-size-now')).toBe('800 MiB');
    expect(text(view, 'rewrite-size-after')).toBe('about 350 MiB (56% smaller)');
    expect(text(view, 'rewrite-free')).toBe('40 GiB on this drive');
    expect(text(view, 'rewrite-estimate-note')).toContain('An estimate from 64 sampled clusters');
    expect(text(view, 'rewrite-estimate-note')).toContain('no larger than 790 MiB');
    expect(text(view, 'rewrite-snapshots-kept')).toContain('Every snapshot is kept (2)');
    expect(view.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(submitDisabled(view)).toBe(false);
  });

  it('offers zstd, and asks for a new estimate when the type changes; a compat 1.1 disk has no upgrade to offer', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(view.find('[data-testid="rewrite-upgrade"]').exists()).toBe(false);
    const zstd = view.get('[data-testid="rewrite-compression-type"] option[value="zstd"]');
    expect(zstd.text()).not.toContain('upgrade');
    await view.get('[data-testid="rewrite-compression-type"]').setValue('zstd');
    await flushPromises();
    expect(started.at(-1)).toEqual(expect.objectContaining({ kind: 'image.rewritePreview', args: { compression: 'compress', compressionType: 'zstd' } }));
  });

  it('on a compat 0.10 disk: zstd upgrades it to compat 1.1 (ticked and sent to the estimate and the job), declining the upgrade goes back to zlib, and the end says so', async () => {
    info = imageInfo({ filename: PATH, 'format-specific': { type: 'qcow2', data: { compat: '0.10', 'compression-type': 'zlib', 'refcount-bits': 16 } } });
    useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    const upgrade = view.get('[data-testid="rewrite-upgrade"]');
    expect((upgrade.element as HTMLInputElement).checked).toBe(false);
    expect(view.get('[data-testid="rewrite-compression-type"] option[value="zstd"]').text()).toContain('(upgrades the disk to compat 1.1)');

    await view.get('[data-testid="rewrite-compression-type"]').setValue('zstd');
    await flushPromises();
    expect((upgrade.element as HTMLInputElement).checked).toBe(true);
    expect(started.at(-1)).toEqual(expect.objectContaining({ kind: 'image.rewritePreview', args: { compression: 'compress', compressionType: 'zstd', compat: '1.1' } }));
    await upgrade.setValue(false);
    await flushPromises();
    expect((view.get('[data-testid="rewrite-compression-type"]').element as HTMLSelectElement).value).toBe('zlib');
    expect(started.at(-1)).toEqual(expect.objectContaining({ kind: 'image.rewritePreview', args: { compression: 'compress', compressionType: 'zlib' } }));

    await upgrade.setValue(true);
    await flushPromises();
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toEqual(expect.objectContaining({ kind: 'image.compress', path: PATH, args: { compressionType: 'zlib', compat: '1.1' } }));
    const summary: RewriteSummary = { beforeBytes: 800 * MiB, afterBytes: 360 * MiB, snapshots: 2, storedClusters: 100, compressedClusters: 12000, zeroClusters: 3, verified: true, encryption: 'none', upgradedToVersion3: true };
    end('image.compress', { result: summary });
    await flushPromises();
    expect(text(view, 'rewrite-result-detail')).toMatch(/^Upgraded to compat 1\.1 \(qcow2 v3\); 2 snapshots kept/);
  });

  it('Compact… offers the upgrade on a compat 0.10 disk only, and sends it', async () => {
    const recent = await mountRewrite('compact');
    expect(recent.find('[data-testid="rewrite-upgrade"]').exists()).toBe(false);
    recent.unmount();
    info = imageInfo({ filename: PATH, 'format-specific': { type: 'qcow2', data: { compat: '0.10', 'compression-type': 'zlib', 'refcount-bits': 16 } } });
    useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
    const view = await mountRewrite('compact');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('[data-testid="rewrite-upgrade"]').setValue(true);
    await flushPromises();
    expect(started.at(-1)).toEqual(expect.objectContaining({ kind: 'image.rewritePreview', args: { compression: 'keep', compat: '1.1' } }));
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toEqual(expect.objectContaining({ kind: 'image.compact', path: PATH, args: { compat: '1.1' } }));
  });

  it('refuses to start when the estimate does not fit in the free space, and cautions when only the worst case does not', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview({ freeBytes: 300 * MiB }) });
    await flushPromises();
    expect(text(view, 'dialog-problem')).toBe(`Not enough free space: the new file needs about ${formatBytes(366 * MiB)} beside the disk, and 300 MiB is free. Free some space first.`);
    expect(submitDisabled(view)).toBe(true);
    expect(view.get('[data-testid="rewrite-free"]').classes()).toContain('short');

    expect(spaceVerdict(preview({ freeBytes: 500 * MiB }))).toEqual({ problem: null, caution: expect.stringContaining('could need up to 790 MiB') });
    expect(spaceVerdict(preview({ freeBytes: null }))).toEqual({ problem: null, caution: null });
  });

  it('says what the preview could not do, in words, and does not start', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { error: { code: 'UNSUPPORTED_FEATURE', message: 'The disk keeps its data in an external data file, which Cowbell cannot rewrite' } });
    await flushPromises();
    expect(text(view, 'dialog-problem')).toBe('This image uses a qcow2 feature Cowbell does not support yet. The disk keeps its data in an external data file, which Cowbell cannot rewrite');
    expect(submitDisabled(view)).toBe(true);
  });

  it('offers to read the estimate again after a failure that may pass (a VM held the disk), and goes on with the new answer', async () => {
    const view = await mountRewrite('compress');
    expect(view.find('[data-testid="rewrite-preview-retry"]').exists()).toBe(false);
    end('image.rewritePreview', { error: { code: 'IN_USE', message: 'A VM is using /disks/fedora.qcow2' } });
    await flushPromises();
    expect(text(view, 'dialog-problem')).toContain('A VM is using /disks/fedora.qcow2');
    expect(submitDisabled(view)).toBe(true);
    const asked = started.filter((job) => job.kind === 'image.rewritePreview').length;
    await view.get('[data-testid="rewrite-preview-retry"]').trigger('click');
    await flushPromises();
    expect(started.filter((job) => job.kind === 'image.rewritePreview')).toHaveLength(asked + 1);
    // While it reads again, the figures say so and the old failure is gone.
    expect(text(view, 'rewrite-size-after')).toContain('estimating');
    expect(view.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(text(view, 'rewrite-size-after')).toContain('350 MiB');
    expect(view.find('[data-testid="rewrite-preview-retry"]').exists()).toBe(false);
    expect(submitDisabled(view)).toBe(false);
  });

  it('says plainly that an encrypted disk cannot be compressed, and asks main for nothing', async () => {
    info = imageInfo({ filename: PATH, encrypted: true });
    useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
    const view = await mountRewrite('compress');
    expect(text(view, 'rewrite-blocked')).toBe('An encrypted disk cannot be compressed: QEMU stores compressed clusters unencrypted. Compact it instead, or decrypt it first.');
    expect(view.find('[data-testid="rewrite-figures"]').exists()).toBe(false);
    expect(submitDisabled(view)).toBe(true);
    expect(started).toEqual([]);
  });

  it('starts the compress, follows its steps with bytes, rate and time left, then shows before → after and re-reads the disk', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.compress', path: PATH, args: { compressionType: 'zlib' } });
    expect(view.get('[data-testid="dialog"]').attributes('data-phase')).toBe('running');
    const jobId = started.at(-1)?.id ?? '';

    fake.emit('job.progress', { jobId, stage: 'reading the mapping tables', done: 3, total: 4, unit: 'steps' });
    await flushPromises();
    expect(view.findAll('[data-testid="job-step"]').map((step) => step.classes('current'))).toEqual([true, false, false, false]);
    const jobs = useJobsStore();
    const record = jobs.find(jobId);
    if (!record) throw new Error('no job record');
    // The store computes the rate from samples over time; here it is set as a sample pair would.
    fake.emit('job.progress', { jobId, stage: 'copying', done: 200 * MiB, total: 800 * MiB, unit: 'bytes' });
    record.rate = 100 * MiB;
    record.secondsLeft = 6;
    await flushPromises();
    expect(view.findAll('[data-testid="job-step"]').map((step) => step.classes('current'))).toEqual([false, true, false, false]);
    expect(text(view, 'dialog-progress-detail')).toBe('200 MiB of 800 MiB · 100 MiB/s · 6 s left');
    // A screen reader hears the bar as a percentage and the step's name, not every figure.
    expect(view.get('[data-testid="dialog-progress"]').attributes('aria-valuetext')).toBe('25 %');
    expect(view.get('[data-testid="dialog-progress-detail"]').attributes('aria-live')).toBeUndefined();
    expect(text(view, 'dialog-progress-step')).toBe(view.findAll('[data-testid="job-step"]')[1]?.text());
    fake.emit('job.progress', { jobId, stage: 'checking COPIED flags', done: 0, total: 1, unit: 'steps' });
    fake.emit('job.progress', { jobId, stage: 'comparing refcounts', done: 0, total: 1, unit: 'steps' });
    await flushPromises();
    expect(view.findAll('[data-testid="job-step"]').map((step) => step.classes('current'))).toEqual([false, false, true, false]);
    expect(view.find('[data-testid="dialog-submit"]').exists()).toBe(false);

    const opensBefore = fake.calls.filter((call) => call.name === 'image.open').length;
    const summary: RewriteSummary = { beforeBytes: 800 * MiB, afterBytes: 360 * MiB, snapshots: 2, storedClusters: 100, compressedClusters: 12000, zeroClusters: 3, verified: true, encryption: 'none', upgradedToVersion3: false };
    end('image.compress', { result: summary });
    await flushPromises();
    expect(view.get('[data-testid="dialog"]').attributes('data-phase')).toBe('done');
    expect(text(view, 'dialog-title')).toBe('Compressed fedora.qcow2');
    expect(view.get('[data-testid="rewrite-result"]').text()).toContain('800 MiB→360 MiB');
    expect(text(view, 'rewrite-result-change')).toBe('55% smaller');
    expect(text(view, 'rewrite-result-detail')).toContain('2 snapshots kept; every state was compared with the original');
    expect(text(view, 'dialog-cancel')).toBe('Close');
    // The disk's info, tree and space are read again.
    expect(fake.calls.filter((call) => call.name === 'image.open').length).toBeGreaterThan(opensBefore);
    expect(started.slice(-2).map((job) => job.kind).sort()).toEqual(['image.usage', 'snapshot.tree']);
    expect(record.outcome).toBe('800 MiB → 360 MiB (55% smaller); 2 snapshots kept.');
  });

  it('cancels the running job from its Cancel button and says the disk is as it was', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    const jobId = started.at(-1)?.id ?? '';
    await view.get('[data-testid="dialog-cancel"]').trigger('click');
    await flushPromises();
    expect(fake.calls.at(-1)).toEqual({ name: 'job.cancel', args: { jobId } });
    expect(text(view, 'dialog-progress-detail')).toBe('Cancelling…');
    end('image.compress', { error: { code: 'CANCELLED', message: 'Cancelled; the image was left as it was' } });
    await flushPromises();
    expect(view.get('[data-testid="dialog"]').attributes('data-phase')).toBe('ended');
    expect(text(view, 'dialog-job-end-title')).toBe('Cancelled. The disk is as it was.');
  });

  it('maps a failure’s code to words, keeps the engine’s message as detail, and marks a disk another program holds', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    end('image.compress', { error: { code: 'IN_USE', message: 'qemu-system-x86_64 is writing this disk' } });
    await flushPromises();
    expect(view.get('[data-testid="dialog-job-end"]').attributes('data-code')).toBe('IN_USE');
    expect(text(view, 'dialog-job-end-title')).toBe('Another program, such as a running virtual machine, is using this disk.');
    expect(text(view, 'dialog-job-end-detail')).toBe('qemu-system-x86_64 is writing this disk');
    expect(view.get('[data-testid="dialog-job-end"]').text()).toContain('The disk is as it was.');
    expect(useDiskDataStore().disks.get(PATH)?.inUseReason).toContain('qemu-system-x86_64 is writing this disk');
  });

  it('hides while running: the job goes on in the jobs panel', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    await view.get('[data-testid="dialog-hide"]').trigger('click');
    expect(view.emitted('close')).toHaveLength(1);
    expect(useJobsStore().panelOpen).toBe(true);
    expect(useJobsStore().running.map((job) => job.title)).toEqual(['Compress — fedora.qcow2']);
    expect(fake.calls.some((call) => call.name === 'job.cancel')).toBe(false);
  });
});

describe('Escape in a job\'s dialog', () => {
  it('hides the dialog while the job runs : the job goes on (a stray key must not throw away a long compress)', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('form').trigger('submit');
    await flushPromises();
    // The browser's cancel event on the <dialog>: what Escape sends.
    await view.get('dialog').trigger('cancel');
    expect(view.emitted('close')).toHaveLength(1);
    expect(useJobsStore().panelOpen).toBe(true);
    expect(fake.calls.some((call) => call.name === 'job.cancel')).toBe(false);
  });

  it('still cancels a dialog whose job has not started', async () => {
    const view = await mountRewrite('compress');
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    await view.get('dialog').trigger('cancel');
    expect(view.emitted('close')).toHaveLength(1);
    expect(useJobsStore().panelOpen).toBe(false);
  });
});

describe('the Compact… dialog', () => {
  it('estimates with or without uncompressing, and sends the choice', async () => {
    const view = await mountRewrite('compact');
    expect(started[0]).toMatchObject({ kind: 'image.rewritePreview', args: { compression: 'keep' } });
    end('image.rewritePreview', { result: preview({ expectedBytes: 600 * MiB }) });
    await flushPromises();
    expect(text(view, 'dialog-title')).toBe('Compact fedora.qcow2');
    await view.get('[data-testid="rewrite-uncompress"]').setValue(true);
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.rewritePreview', args: { compression: 'uncompress' } });
    end('image.rewritePreview', { result: preview({ expectedBytes: 900 * MiB }) });
    await flushPromises();
    expect(text(view, 'rewrite-no-gain')).toContain('no smaller');
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.compact', path: PATH, args: { uncompress: true } });
  });
});

describe('the Save as New Disk… dialog', () => {
  const snapshot: SnapshotNode = {
    id: '2',
    name: 'before upgrade',
    parentId: '1',
    parentInferred: false,
    date: '2025-11-26T15:48:02.000Z',
    vmClock: 0,
    vmStateSize: 0,
    exclusiveBytes: 0,
    sharedBytes: 0,
  };

  async function mountSave(): Promise<VueWrapper> {
    wrapper = mount(SaveSnapshotDialog, { props: { path: PATH, snapshot }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    return wrapper;
  }

  it('proposes a file beside the disk named after the snapshot, and follows the format with its extension', async () => {
    expect(proposedName('/vms/win 11.qcow2', 'Before: the “big” update!', 'qcow2')).toBe('win 11-Before-the-big-update.qcow2');
    expect(proposedName('/vms/disk.img', '…', 'raw')).toBe('disk-snapshot.img');
    const view = await mountSave();
    expect(text(view, 'dialog-title')).toBe('Save “before upgrade” as a new disk');
    expect((view.get('[data-testid="export-folder"]').element as HTMLInputElement).value).toBe('/disks/');
    expect((view.get('[data-testid="export-name"]').element as HTMLInputElement).value).toBe('fedora-before-upgrade.qcow2');
    await view.get('[data-testid="export-format"]').setValue('raw');
    expect((view.get('[data-testid="export-name"]').element as HTMLInputElement).value).toBe('fedora-before-upgrade.img');
    expect(text(view, 'export-target')).toBe('/disks/fedora-before-upgrade.img');
  });

  it('refuses a relative folder, a name with a folder in it, a name longer than a file system takes, or the disk’s own file', async () => {
    const view = await mountSave();
    await view.get('[data-testid="export-folder"]').setValue('disks');
    expect(text(view, 'dialog-problem')).toContain('full path of a folder');
    await view.get('[data-testid="export-folder"]').setValue('/disks');
    await view.get('[data-testid="export-name"]').setValue('sub/new.qcow2');
    expect(text(view, 'dialog-problem')).toContain('file name (without a folder)');
    await view.get('[data-testid="export-name"]').setValue(`${'é'.repeat(125)}.qcow2`);
    expect(text(view, 'dialog-problem')).toContain('too long (at most 255 bytes)');
    await view.get('[data-testid="export-name"]').setValue('fedora.qcow2');
    expect(text(view, 'dialog-problem')).toContain('this disk’s own file');
    expect(submitDisabled(view)).toBe(true);
    // A name already taken is said before anything is asked (an encrypted disk's passphrase, its PBKDF2).
    await view.get('[data-testid="export-name"]').setValue('taken.qcow2');
    await flushPromises();
    expect(text(view, 'dialog-problem')).toContain('already there');
    expect(submitDisabled(view)).toBe(true);
    await view.get('[data-testid="export-name"]').setValue('free.qcow2');
    await flushPromises();
    expect(view.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    // A folder that is not there is said too (UI audit: the save failed after submit, and everything typed was lost).
    await view.get('[data-testid="export-folder"]').setValue('/nowhere/dir');
    await flushPromises();
    expect(text(view, 'dialog-problem')).toBe('That folder does not exist.');
    expect(submitDisabled(view)).toBe(true);
    await view.get('[data-testid="export-folder"]').setValue('/disks');
    await flushPromises();
    expect(view.find('[data-testid="dialog-problem"]').exists()).toBe(false);
    expect(started).toEqual([]);
  });

  it('reads the disk into the new file as a job with progress, then says where it went and opens it', async () => {
    const view = await mountSave();
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ id: 'job-1', kind: 'snapshot.export', path: PATH, args: { name: 'before upgrade', id: '2', date: '2025-11-26T15:48:02.000Z', target: '/disks/fedora-before-upgrade.qcow2', format: 'qcow2' } }]);
    fake.emit('job.progress', { jobId: 'job-1', stage: 'converting', done: 256 * MiB, total: 1024 * MiB, unit: 'bytes' });
    await flushPromises();
    expect(text(view, 'dialog-progress-detail')).toBe('converting · 256 MiB of 1 GiB');
    end('snapshot.export', { result: { target: '/disks/fedora-before-upgrade.qcow2', format: 'qcow2', virtualSize: 1024 * MiB, fileBytes: 300 * MiB } });
    await flushPromises();
    expect(view.get('[data-testid="export-result"]').text()).toContain('a 1 GiB qcow2 disk in a 300 MiB file');
    expect(useJobsStore().jobs.find((job) => job.id === 'job-1')?.outcome).toBe('Saved as fedora-before-upgrade.qcow2: a 1 GiB qcow2 disk in a 300 MiB file.');
    await view.get('[data-testid="export-open"]').trigger('click');
    await flushPromises();
    expect(view.emitted('close')).toHaveLength(1);
    expect(useLibraryStore().selectedPath).toBe('/disks/fedora-before-upgrade.qcow2');
  });

  it('says why a save failed, and that nothing was written', async () => {
    const view = await mountSave();
    await view.get('form').trigger('submit');
    await flushPromises();
    end('snapshot.export', { error: { code: 'NO_SPACE', message: 'No space left on the drive' } });
    await flushPromises();
    expect(text(view, 'dialog-job-end-title')).toBe('There is not enough free space on the drive.');
    expect(view.get('[data-testid="dialog-job-end"]').text()).toContain('No new file was written');
  });

  it('asks for an encrypted disk\'s passphrase first, sends it with that save only, and says the new disk is not encrypted', async () => {
    info = imageInfo({ filename: PATH, encrypted: true });
    useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
    const view = await mountSave();
    expect(text(view, 'export-encrypted-note')).toContain('the new disk is not encrypted');
    expect(submitDisabled(view)).toBe(false);
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started).toHaveLength(0);
    const field = document.body.querySelector<HTMLInputElement>('[data-testid="unlock-passphrase"]');
    if (field === null) throw new Error('no Unlock dialog');
    field.value = 'moo moo';
    field.dispatchEvent(new Event('input'));
    await flushPromises();
    document.body.querySelector<HTMLFormElement>('[data-testid="unlock-dialog"] form')?.dispatchEvent(new Event('submit', { cancelable: true }));
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'snapshot.export', args: { name: 'before upgrade', passphrase: 'moo moo' } });
  });
});

describe('the disk’s actions', () => {
  it('offer Compact… and Compress… beside Check…, disabled with the reason on a disk Cowbell must not write', async () => {
    const disk = { path: PATH, status: 'ready' as const, info, error: null, refreshing: false };
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    for (const id of ['compact-button', 'compress-button']) expect((wrapper.get(`[data-testid="${id}"]`).element as HTMLButtonElement).disabled).toBe(false);
    wrapper.unmount();

    const readOnly = { ...disk, info: imageInfo({ filename: PATH, 'read-only-reason': 'in use by another program' }) };
    useLibraryStore().disks = [readOnly];
    wrapper = mount(DiskView, { props: { disk: readOnly }, global: { plugins: [pinia] } });
    await flushPromises();
    for (const id of ['compact-button', 'compress-button']) {
      const button = wrapper.get(`[data-testid="${id}"]`);
      expect((button.element as HTMLButtonElement).disabled).toBe(true);
      expect(button.element.parentElement?.getAttribute('title')).toBe('Read-only: in use by another program');
    }
  });

  it('are all disabled, saying why, once the connection to Cowbell is lost (UI audit: they opened, then failed)', async () => {
    const disk = { path: PATH, status: 'ready' as const, info, error: null, refreshing: false };
    useAppStore().connectionState = 'lost';
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    for (const id of ['compact-button', 'compress-button']) {
      const button = wrapper.get(`[data-testid="${id}"]`);
      expect((button.element as HTMLButtonElement).disabled).toBe(true);
      expect(button.element.parentElement?.getAttribute('title')).toBe(CONNECTION_LOST);
    }
    expect(useSnapshotActions().writeBlockedReason(PATH)).toBe(CONNECTION_LOST);
    expect(useDiskActions().exportBlockedReason(PATH)).toBe(CONNECTION_LOST);
  });
});

describe('a disk with dirty bitmaps', () => {
  it('whose names could not be read still offers to leave them behind (the regression audit found the dialog a dead end), and sends the agreement', async () => {
    info = imageInfo({ filename: PATH, 'actual-size': 800 * MiB, 'read-only-reason': BITMAPS_READ_ONLY_REASON });
    useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
    const view = await mountRewrite('compact');
    expect(started.at(-1)?.args).toMatchObject({ dropBitmaps: true });
    end('image.rewritePreview', { result: preview() });
    await flushPromises();
    expect(text(view, 'rewrite-bitmaps')).toContain('their names could not be read');
    expect(submitDisabled(view)).toBe(true);
    await view.get('[data-testid="rewrite-drop-bitmaps"]').setValue(true);
    expect(submitDisabled(view)).toBe(false);
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started.at(-1)).toMatchObject({ kind: 'image.compact', args: { dropBitmaps: true } });
  });
});
