import { describe, expect, it } from 'vitest';
import type { UsageReport } from '../../src/shared/ipc/contract.ts';
import { binaryAxisScale, snapshotSpaceLegend, snapshotSpaceOption, snapshotSpaceRows, spaceFigures, spaceSummaryOption, type ChartPalette } from '../../src/renderer/src/lib/space-charts.ts';

const palette: ChartPalette = {
  text: '#111',
  textSecondary: '#555',
  grid: '#ddd',
  surface: '#fff',
  font: 'system-ui',
  virtual: '#virtual',
  data: '#data',
  shared: '#shared',
  metadata: '#metadata',
  leaked: '#leaked',
  free: '#free',
  unwritten: '#unwritten',
  current: '#current',
  highlight: '#highlight',
};

const MiB = 1024 * 1024;

function usage(snapshots: UsageReport['snapshots'] = []): UsageReport {
  return {
    virtualSize: 64 * 1024 * MiB,
    fileSize: 200 * MiB,
    allocatedBytes: 180 * MiB,
    metadataBytes: 2 * MiB,
    leakedBytes: 3 * MiB,
    current: { exclusiveBytes: 8 * MiB, sharedBytes: 150 * MiB },
    snapshots,
  };
}

interface BarSeries {
  name: string;
  data: ({ value: number; itemStyle?: { borderColor?: string; color?: string } } | null)[];
  itemStyle?: { color: string };
}

/** The labels a bytes axis shows: every step from 0 to its end. */
function axisLabels(option: { xAxis?: unknown }): string[] {
  const axis = option.xAxis as { min: number; max: number; interval: number; axisLabel: { formatter: (value: number) => string } };
  expect(axis.min).toBe(0);
  const labels: string[] = [];
  for (let value = 0; value <= axis.max; value += axis.interval) labels.push(axis.axisLabel.formatter(value));
  return labels;
}

describe('bytes axes', () => {
  it('step in powers of two, so the labels are the units a disk is sized in', () => {
    expect(binaryAxisScale(1024 * MiB)).toEqual({ max: 1024 * MiB, interval: 512 * MiB });
    expect(binaryAxisScale(192 * MiB)).toEqual({ max: 192 * MiB, interval: 64 * MiB });
    expect(binaryAxisScale(365 * MiB)).toEqual({ max: 384 * MiB, interval: 128 * MiB });
    expect(binaryAxisScale(100 * 1024 * MiB)).toEqual({ max: 128 * 1024 * MiB, interval: 64 * 1024 * MiB });
  });

  it('end at or past the largest bar, in at most three steps, whatever its size', () => {
    for (const largest of [1, 2, 3, 5, 511, 4097, 65536 + 1, 333 * MiB + 12345, 7 * 1024 * 1024 * MiB]) {
      const { max, interval } = binaryAxisScale(largest);
      expect(Math.log2(interval) % 1).toBe(0);
      expect(max).toBeGreaterThanOrEqual(largest);
      expect(max / interval).toBeLessThanOrEqual(3);
      expect(max - interval).toBeLessThan(largest);
    }
  });

  it('still draw an axis for a disk with nothing in it, without a scale of "0 B … 1 B" (UI audit)', () => {
    expect(binaryAxisScale(0)).toEqual({ max: 1, interval: 1 });
    const empty = { ...usage(), virtualSize: 0, fileSize: 0, allocatedBytes: 0, metadataBytes: 0, leakedBytes: 0 };
    expect((spaceSummaryOption(empty, palette).xAxis as { axisLabel: { show: boolean } }).axisLabel.show).toBe(false);
    expect((spaceSummaryOption(usage(), palette).xAxis as { axisLabel: { show: boolean } }).axisLabel.show).toBe(true);
  });
});

describe('space summary chart', () => {
  it('splits the allocated bytes into guest data, metadata and leaks, and the file into allocated and unused', () => {
    expect(spaceFigures(usage())).toEqual({
      virtualSize: 64 * 1024 * MiB,
      allocatedBytes: 180 * MiB,
      fileSize: 200 * MiB,
      guestDataBytes: 175 * MiB,
      unwrittenBytes: 0,
      metadataBytes: 2 * MiB,
      leakedBytes: 3 * MiB,
      unusedFileBytes: 20 * MiB,
      bytesOnDisk: null,
    });
  });

  it('sets apart clusters a preallocated disk never wrote (holes of the file) from guest data, in the figures and as a bar segment', () => {
    const preallocated: UsageReport = { ...usage(), unwrittenBytes: 150 * MiB, bytesOnDisk: 31 * MiB };
    expect(spaceFigures(preallocated)).toMatchObject({ guestDataBytes: 25 * MiB, unwrittenBytes: 150 * MiB, bytesOnDisk: 31 * MiB });
    const series = spaceSummaryOption(preallocated, palette).series as BarSeries[];
    expect(series.map((entry) => entry.name)).toEqual(['Virtual size', 'Guest data', 'Never written', 'Metadata', 'Leaked', 'Unused in file']);
    expect(series.find((entry) => entry.name === 'Never written')?.itemStyle?.color).toBe('#unwritten');
    // A segment of 0 bytes is not drawn at all (its minimum bar height would show a sliver of it).
    const clean = spaceSummaryOption({ ...preallocated, leakedBytes: 0 }, palette).series as BarSeries[];
    expect(clean.find((entry) => entry.name === 'Leaked')?.data).toEqual([null, null, null]);
    const totals = [1, 2].map((row) => series.reduce((sum, entry) => sum + (entry.data[row]?.value ?? 0), 0));
    expect(totals).toEqual([180 * MiB, 200 * MiB]);
  });

  it('draws virtual size, allocated and file size as three bars whose segments add up to each', () => {
    const option = spaceSummaryOption(usage(), palette);
    expect((option.yAxis as { data: string[] }).data).toEqual(['Virtual disk  64 GiB', 'Allocated  180 MiB', 'File  200 MiB']);
    const series = option.series as BarSeries[];
    const totals = [0, 1, 2].map((row) => series.reduce((sum, entry) => sum + (entry.data[row]?.value ?? 0), 0));
    expect(totals).toEqual([64 * 1024 * MiB, 180 * MiB, 180 * MiB + 20 * MiB]);
    expect(series.map((entry) => entry.name)).toEqual(['Virtual size', 'Guest data', 'Metadata', 'Leaked', 'Unused in file']);
    expect(series.find((entry) => entry.name === 'Leaked')?.itemStyle?.color).toBe('#leaked');
    // Tooltips are drawn on the canvas: HTML ones would need inline styles the CSP refuses.
    expect((option.tooltip as { renderMode: string }).renderMode).toBe('richText');
  });

  it('labels its axis in the units disks are sized in, up to the longest bar', () => {
    expect(axisLabels(spaceSummaryOption(usage(), palette))).toEqual(['0 B', '32 GiB', '64 GiB']);
    const small = { ...usage(), virtualSize: 1024 * MiB, fileSize: 192 * MiB, allocatedBytes: 192 * MiB };
    expect(axisLabels(spaceSummaryOption(small, palette))).toEqual(['0 B', '512 MiB', '1 GiB']);
  });
});

describe('space by snapshot chart', () => {
  const snapshots = [
    { id: '1', name: 'fresh install', exclusiveBytes: 1 * MiB, sharedBytes: 40 * MiB },
    { id: '2', name: 'big one', exclusiveBytes: 90 * MiB, sharedBytes: 10 * MiB },
    { id: '3', name: 'tiny', exclusiveBytes: 0, sharedBytes: 5 * MiB },
  ];

  it('puts the biggest own data first and counts the current state as a row', () => {
    const rows = snapshotSpaceRows(usage(snapshots));
    expect(rows.map((row) => row.id)).toEqual(['2', 'current', '1', '3']);
    expect(rows[1]).toMatchObject({ label: 'Current state', kind: 'current', exclusiveBytes: 8 * MiB });
  });

  it('sums the rows past the limit into one, so 500 snapshots stay readable', () => {
    const many = Array.from({ length: 500 }, (_, index) => ({ id: String(index + 1), name: `s${index + 1}`, exclusiveBytes: index * 4096, sharedBytes: 4096 }));
    const rows = snapshotSpaceRows(usage(many), 12);
    expect(rows).toHaveLength(12);
    expect(rows[0]?.id).toBe('current');
    expect(rows[1]?.id).toBe('500');
    const others = rows.at(-1);
    expect(others).toMatchObject({ id: 'others', kind: 'others', label: '490 more', sharedBytes: 0 });
    const all = [{ exclusiveBytes: 8 * MiB }, ...many].reduce((sum, row) => sum + row.exclusiveBytes, 0);
    expect(rows.reduce((sum, row) => sum + row.exclusiveBytes, 0)).toBe(all);
  });

  it('stacks own and shared bytes per row, colours the current state apart, and outlines the highlighted row', () => {
    const rows = snapshotSpaceRows(usage(snapshots));
    const option = snapshotSpaceOption(rows, palette, '1');
    expect((option.yAxis as { data: string[] }).data).toEqual(['big one', 'Current state', 'fresh install', 'tiny']);
    // A long name is cut to a width, not left to squeeze the bars (UI audit 12).
    expect((option.yAxis as { axisLabel: object }).axisLabel).toMatchObject({ width: 120, overflow: 'truncate' });
    const [own, shared] = option.series as BarSeries[];
    // The legend names the current state's colour too (UI audit: orange, unexplained).
    expect(snapshotSpaceLegend(rows, palette)).toEqual([
      { name: 'Only in this state', color: '#data' },
      { name: 'Only in the current state', color: '#current' },
      { name: 'Shared', color: '#shared' },
    ]);
    expect(snapshotSpaceLegend(rows.filter((row) => row.kind !== 'current'), palette).map((entry) => entry.name)).toEqual(['Only in this state', 'Shared']);
    expect(own?.data.map((item) => item?.value)).toEqual([90 * MiB, 8 * MiB, 1 * MiB, 0]);
    expect(shared?.data.map((item) => item?.value)).toEqual([10 * MiB, 150 * MiB, 40 * MiB, 5 * MiB]);
    expect(own?.data[1]?.itemStyle?.color).toBe('#current');
    expect(own?.data.map((item) => item?.itemStyle?.borderColor)).toEqual([undefined, undefined, '#highlight', undefined]);
  });

  it('ends its axis at the first binary step past the longest row (own and shared together)', () => {
    // The current state's 8 + 150 MiB is the longest row.
    expect(axisLabels(snapshotSpaceOption(snapshotSpaceRows(usage(snapshots)), palette))).toEqual(['0 B', '64 MiB', '128 MiB', '192 MiB']);
    // The tree's narrow side panel asks for two steps: three labels fit there.
    expect(axisLabels(snapshotSpaceOption(snapshotSpaceRows(usage(snapshots)), palette, null, 2))).toEqual(['0 B', '128 MiB', '256 MiB']);
  });
});
