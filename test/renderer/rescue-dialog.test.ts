/**
 * "Save what can be read…" against a fake main: where the disk view offers it (a damaged disk), what
 * the dialog sends, how it follows the job (progress, cancel) and the report it shows at the end.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ImageInfo, RescueReport } from '../../src/shared/ipc/contract.ts';
import type { UnreadableRange } from '../../src/shared/qcow2/model.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import DiskView from '../../src/renderer/src/components/DiskView.vue';
import OpenError from '../../src/renderer/src/components/OpenError.vue';
import RescueDialog, { proposedRescueName } from '../../src/renderer/src/components/dialogs/RescueDialog.vue';
import { describeRescue } from '../../src/renderer/src/lib/describe-rescue.ts';
import { useDialogsStore } from '../../src/renderer/src/stores/dialogs.ts';
import { useDiskDataStore } from '../../src/renderer/src/stores/disk-data.ts';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeJobsConnection, imageInfo, type fakeConnection, type JobOutcome, type StartedJob } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';
const MiB = 1024 * 1024;

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: StartedJob[];
let endJob: (kind: string, outcome: JobOutcome) => void;
let info: ImageInfo;
let wrapper: VueWrapper | null = null;

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  info = imageInfo({ filename: PATH, 'virtual-size': 64 * MiB });
  ({ fake, started, end: endJob } = fakeJobsConnection({
    'image.open': () => info,
    'image.watch': () => null,
  }));
  replaceConnection(fake);
  useLibraryStore().disks = [{ path: PATH, status: 'ready', info, error: null, refreshing: false }];
});

afterEach(() => {
  wrapper?.unmount();
  wrapper = null;
  replaceConnection(null);
});

function end(outcome: JobOutcome): void {
  endJob('image.rescue', outcome);
}

async function mountDialog(): Promise<VueWrapper> {
  wrapper = mount(RescueDialog, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
  await flushPromises();
  return wrapper;
}

function text(view: VueWrapper, testId: string): string {
  return view.get(`[data-testid="${testId}"]`).text();
}

function range(start: number, length: number, reason: UnreadableRange['reason'], detail: string): UnreadableRange {
  return { start, length, reason, detail };
}

function report(unreadable: UnreadableRange[], overrides: Partial<RescueReport> = {}): RescueReport {
  return {
    target: '/disks/fedora-rescued.qcow2',
    format: 'qcow2',
    virtualSize: 64 * MiB,
    fileBytes: 40 * MiB,
    unreadableBytes: unreadable.reduce((sum, entry) => sum + entry.length, 0),
    unreadableRangeCount: unreadable.length,
    unreadable,
    ...overrides,
  };
}

describe('the Save What Can Be Read… dialog', () => {
  it('proposes a file beside the disk, follows the format, and offers the snapshots the tree could read', async () => {
    expect(proposedRescueName('/vms/win 11.qcow2', 'qcow2')).toBe('win 11-rescued.qcow2');
    expect(proposedRescueName('/vms/disk.img', 'raw')).toBe('disk-rescued.img');
    useDiskDataStore().entry(PATH).tree = {
      // Two snapshots of one name (qemu-img snapshot -c takes a name twice): the menu tells them apart, the job names the one chosen by id.
      snapshots: [
        { id: '1', name: 'installed', parentId: null, parentInferred: false, date: '2025-11-26T15:48:02.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 },
        { id: '2', name: 'installed', parentId: '1', parentInferred: false, date: '2025-11-27T15:48:02.000Z', vmClock: 0, vmStateSize: 0, exclusiveBytes: 0, sharedBytes: 0 },
      ],
      currentParentId: '2',
      currentParentInferred: false,
      current: { exclusiveBytes: 0, sharedBytes: 0 },
    };
    const view = await mountDialog();
    expect(text(view, 'dialog-title')).toBe('Save what can be read of fedora.qcow2');
    expect(text(view, 'rescue-target')).toBe('/disks/fedora-rescued.qcow2');
    await view.get('[data-testid="rescue-format"]').setValue('raw');
    expect(text(view, 'rescue-target')).toBe('/disks/fedora-rescued.img');
    expect(view.findAll('[data-testid="rescue-state"] option').map((option) => option.text())).toEqual(['The current state', 'Snapshot “installed” (id 1)', 'Snapshot “installed” (id 2)']);
    await view.get('[data-testid="rescue-state"]').setValue('2');
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started).toEqual([{ id: 'job-1', kind: 'image.rescue', path: PATH, args: { target: '/disks/fedora-rescued.img', format: 'raw', snapshot: 'installed', snapshotId: '2', snapshotDate: '2025-11-27T15:48:02.000Z' } }]);
  });

  it('refuses the disk’s own file and a relative folder, and starts nothing', async () => {
    const view = await mountDialog();
    await view.get('[data-testid="rescue-name"]').setValue('fedora.qcow2');
    expect(text(view, 'dialog-problem')).toContain('this disk’s own file');
    await view.get('[data-testid="rescue-folder"]').setValue('disks');
    expect(text(view, 'dialog-problem')).toContain('full path of a folder');
    await view.get('form').trigger('submit');
    expect(started).toEqual([]);
  });

  it('shows progress, then the unreadable ranges with their reasons in words and the total', async () => {
    const view = await mountDialog();
    await view.get('form').trigger('submit');
    await flushPromises();
    expect(started[0]).toMatchObject({ kind: 'image.rescue', args: { target: '/disks/fedora-rescued.qcow2', format: 'qcow2' } });
    fake.emit('job.progress', { jobId: 'job-1', stage: 'converting', done: 16 * MiB, total: 64 * MiB, unit: 'bytes' });
    await flushPromises();
    expect(text(view, 'dialog-progress-detail')).toBe('converting · 16 MiB of 64 MiB');
    end({
      result: report([
        range(2 * MiB, 2 * MiB, 'L2_UNALIGNED', 'L1 entry 1 points to an unaligned L2 table at 0x4200'),
        range(40 * MiB, 65536, 'COMPRESSED_CORRUPT', 'A compressed cluster could not be decompressed'),
      ]),
    });
    await flushPromises();
    expect(view.get('[data-testid="rescue-dialog"]').attributes('data-phase')).toBe('done');
    const rows = view.findAll('[data-testid="rescue-ranges"] tbody tr');
    expect(rows.map((row) => row.attributes('data-reason'))).toEqual(['L2_UNALIGNED', 'COMPRESSED_CORRUPT']);
    expect(rows[0]?.text()).toContain('0x200000');
    expect(rows[0]?.text()).toContain('2 MiB');
    expect(rows[0]?.text()).toContain('Its mapping table is at an impossible place');
    expect(rows[0]?.text()).toContain('L1 entry 1 points to an unaligned L2 table at 0x4200');
    expect(rows[1]?.text()).toContain('Its compressed data does not decompress');
    expect(text(view, 'rescue-total')).toBe('Unreadable: 2.06 MiB (3.22% of the disk) in 2 ranges.');
    expect(useJobsStore().jobs.find((job) => job.id === 'job-1')?.outcome).toBe('Saved as fedora-rescued.qcow2; 2.06 MiB in 2 ranges could not be read and are zeros.');
    await view.get('[data-testid="rescue-open"]').trigger('click');
    await flushPromises();
    expect(useLibraryStore().selectedPath).toBe('/disks/fedora-rescued.qcow2');
  });

  it('shows at most 50 ranges and says how many more there are; says so when everything was read', async () => {
    const many = Array.from({ length: 80 }, (_, index) => range(index * 2 * MiB, 4096, 'CLUSTER_OUT_OF_FILE', 'points past the end of the file'));
    const view = await mountDialog();
    await view.get('form').trigger('submit');
    await flushPromises();
    end({ result: report(many.slice(0, 70), { unreadableRangeCount: 80, unreadableBytes: 80 * 4096 }) });
    await flushPromises();
    expect(view.findAll('[data-testid="rescue-ranges"] tbody tr')).toHaveLength(50);
    expect(text(view, 'rescue-more')).toContain('and 30 more');
    expect(describeRescue(report([]))).toBe('Saved as fedora-rescued.qcow2: everything could be read.');

    wrapper?.unmount();
    const clean = await mountDialog();
    await clean.get('form').trigger('submit');
    await flushPromises();
    end({ result: report([]) });
    await flushPromises();
    expect(text(clean, 'rescue-all-read')).toContain('Everything could be read');
    expect(clean.find('[data-testid="rescue-ranges"]').exists()).toBe(false);
  });

  it('cancels the running copy from its Cancel button and says no file was written', async () => {
    const view = await mountDialog();
    await view.get('form').trigger('submit');
    await flushPromises();
    await view.get('[data-testid="dialog-cancel"]').trigger('click');
    await flushPromises();
    expect(fake.calls.at(-1)).toEqual({ name: 'job.cancel', args: { jobId: 'job-1' } });
    end({ error: { code: 'CANCELLED', message: 'Cancelled' } });
    await flushPromises();
    expect(view.get('[data-testid="rescue-dialog"]').attributes('data-phase')).toBe('ended');
    expect(view.get('[data-testid="dialog-job-end"]').text()).toContain('No new file was written; the disk was only read.');
  });
});

describe('where it is offered', () => {
  it('the disk view of a disk whose tables cannot be read says it is damaged and offers the rescue', async () => {
    const disk = { path: PATH, status: 'ready' as const, info, error: null, refreshing: false };
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    expect(wrapper.find('[data-testid="notice-damaged"]').exists()).toBe(false);
    const data = useDiskDataStore().entry(PATH);
    data.error = { code: 'CORRUPT', message: 'L1 entry 1 points to an unaligned L2 table at 0x4200' };
    data.status = 'error';
    await flushPromises();
    expect(text(wrapper, 'notice-damaged')).toContain('This disk is damaged.');
    expect(text(wrapper, 'notice-damaged')).toContain('L1 entry 1 points to an unaligned L2 table');
    await wrapper.get('[data-testid="rescue-button"]').trigger('click');
    expect(useDialogsStore().current).toEqual({ kind: 'rescue', path: PATH });
  });

  it('a disk QEMU marked corrupt gets the damaged notice (once) with the rescue', async () => {
    const corrupt = imageInfo({ filename: PATH, 'format-specific': { type: 'qcow2', data: { compat: '1.1', 'compression-type': 'zlib', 'refcount-bits': 16, corrupt: true } } });
    const disk = { path: PATH, status: 'ready' as const, info: corrupt, error: null, refreshing: false };
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    expect(text(wrapper, 'notice-damaged')).toContain('QEMU marked it corrupt.');
    expect(wrapper.find('[data-testid="notice-corrupt"]').exists()).toBe(false);
    expect(wrapper.find('[data-testid="rescue-button"]').exists()).toBe(true);
  });

  it('a check that found corruptions makes the disk view offer it too', async () => {
    const disk = { path: PATH, status: 'ready' as const, info, error: null, refreshing: false };
    wrapper = mount(DiskView, { props: { disk }, global: { plugins: [pinia] } });
    await flushPromises();
    useDiskDataStore().noteCheck(PATH, 3);
    await flushPromises();
    expect(text(wrapper, 'notice-damaged')).toContain('The last check found 3 corruptions.');
    useDiskDataStore().noteCheck(PATH, 0);
    await flushPromises();
    expect(wrapper.find('[data-testid="notice-damaged"]').exists()).toBe(false);
  });

  it('an image that could not be opened as damaged offers it; one that is missing does not', async () => {
    wrapper = mount(OpenError, { props: { error: { code: 'CORRUPT', message: 'The L1 table is broken' } }, global: { plugins: [pinia] } });
    await wrapper.get('[data-testid="open-error-rescue"]').trigger('click');
    expect(wrapper.emitted('rescue')).toHaveLength(1);
    wrapper.unmount();
    wrapper = mount(OpenError, { props: { error: { code: 'NOT_FOUND', message: 'no such file' } }, global: { plugins: [pinia] } });
    expect(wrapper.find('[data-testid="open-error-rescue"]').exists()).toBe(false);
  });
});
