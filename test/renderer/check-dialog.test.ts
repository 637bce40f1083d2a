/**
 * The Check dialog against a fake main: before a full repair it says that what is broken beyond
 * repair is removed and named, and when the repair ends its job says, in plain words, which
 * snapshot lost what.
 */
import { flushPromises, mount, type VueWrapper } from '@vue/test-utils';
import { createPinia, setActivePinia, type Pinia } from 'pinia';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CheckResult, JobEnd } from '../../src/shared/ipc/contract.ts';
import { replaceConnection } from '../../src/renderer/src/api.ts';
import CheckDiskDialog from '../../src/renderer/src/components/dialogs/CheckDiskDialog.vue';
import { useJobsStore } from '../../src/renderer/src/stores/jobs.ts';
import { useLibraryStore } from '../../src/renderer/src/stores/library.ts';
import { fakeConnection, imageInfo } from './fixtures.ts';

const PATH = '/disks/fedora.qcow2';

let pinia: Pinia;
let fake: ReturnType<typeof fakeConnection>;
let started: { id: string; kind: string; args: unknown }[];
let wrapper: VueWrapper | null = null;

beforeEach(() => {
  pinia = createPinia();
  setActivePinia(pinia);
  started = [];
  const info = imageInfo({ filename: PATH });
  fake = fakeConnection({
    'job.start': (request) => {
      const { kind, args } = request as { kind: string; args: unknown };
      const id = `job-${started.length + 1}`;
      started.push({ id, kind, args });
      return { jobId: id };
    },
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

describe('the Check dialog', () => {
  it('says before a full repair that what is broken beyond repair is removed and named', async () => {
    wrapper = mount(CheckDiskDialog, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    expect(wrapper.text()).toContain('What is broken beyond repair');
    expect(wrapper.text()).toContain('the result names it');
  });

  it('a full repair that lost part of a snapshot says which snapshot lost what, and why', async () => {
    wrapper = mount(CheckDiskDialog, { props: { path: PATH }, global: { plugins: [pinia] }, attachTo: document.body });
    await flushPromises();
    await wrapper.get('[data-testid="check-mode-all"]').setValue(true);
    await wrapper.get('[data-testid="dialog-submit"]').trigger('click');
    await flushPromises();
    const job = started.find((candidate) => candidate.kind === 'image.repair');
    expect(job?.args).toEqual({ mode: 'all' });
    const result: CheckResult = {
      filename: PATH,
      format: 'qcow2',
      'check-errors': 0,
      'corruptions-fixed': 66,
      'leaks-fixed': 2,
      lost: [{ what: 'range', 'snapshot-id': '1', 'snapshot-name': 'before upgrade', 'guest-offset': 0, length: 256 * 1024, reason: 'guest data overwrote the table that mapped it' }],
      messages: [],
    };
    fake.emit('job.end', { jobId: job?.id ?? '', ok: true, result } as JobEnd);
    await flushPromises();
    const outcome = useJobsStore().find(job?.id ?? '')?.outcome ?? '';
    expect(outcome).toContain('Repaired 66 corruptions and 2 leaked clusters.');
    expect(outcome).toContain('Snapshot “before upgrade” (ID 1) lost 256 KiB of its disk from 0 B on, which now reads as zeros, because guest data overwrote the table that mapped it.');
    expect(outcome).toContain('The image is now clean.');
  });
});
