/**
 * The space summary's words (its chart is hidden from screen readers; the legend says the same):
 * a disk preallocated with metadata shows what it never wrote apart from its guest data, and the
 * share line says what the file takes on disk.
 */
import { mount } from '@vue/test-utils';
import { describe, expect, it } from 'vitest';
import type { UsageReport } from '../../src/shared/ipc/contract.ts';
import SpaceSummaryChart from '../../src/renderer/src/components/space/SpaceSummaryChart.vue';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const base: UsageReport = {
  virtualSize: 128 * GiB,
  fileSize: 128 * GiB + 20 * MiB,
  allocatedBytes: 128 * GiB + 20 * MiB,
  metadataBytes: 20 * MiB,
  leakedBytes: 0,
  current: { exclusiveBytes: 128 * GiB, sharedBytes: 0 },
  snapshots: [],
};

function legend(usage: UsageReport): { items: [string, string][]; share: string } {
  const wrapper = mount(SpaceSummaryChart, { props: { usage }, global: { stubs: { VChart: true, echarts: true } } });
  const items = wrapper.findAll('.legend li:not(.share)').map((item) => [item.get('.label').text(), item.get('.value').text()] as [string, string]);
  const share = wrapper.get('[data-testid="space-share"]').text();
  wrapper.unmount();
  return { items, share };
}

describe('the space summary of a preallocated disk', () => {
  it('shows the clusters it never wrote apart from its guest data, and what the file takes on disk', () => {
    const { items, share } = legend({ ...base, unwrittenBytes: 128 * GiB - 2 * MiB, bytesOnDisk: 22 * MiB });
    expect(items).toEqual([
      ['Guest data', '2 MiB'],
      ['Never written', '128 GiB'],
      ['Metadata', '20 MiB'],
      ['Leaked', '0 B'],
      ['Unused in file', '0 B'],
    ]);
    expect(share).toBe('File is 100% of the virtual size; it takes 22 MiB on disk');
  });

  it('has no "never written" line where there is nothing of the kind, nor an on-disk figure where it is unknown', () => {
    const { items, share } = legend(base);
    expect(items.map(([label]) => label)).toEqual(['Guest data', 'Metadata', 'Leaked', 'Unused in file']);
    expect(share).toBe('File is 100% of the virtual size');
  });
});
