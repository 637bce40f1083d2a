/**
 * The space charts as data: pure functions from the engine's UsageReport to ECharts option objects,
 * so what each bar means is stated (and tested) here and the components only draw.
 */
import { shownName } from './shown-name.ts';
import type { EChartsOption } from 'echarts';
import { formatBytes, formatBytesExact } from '../../../shared/format-units.ts';
import type { UsageReport } from '../../../shared/ipc/contract.ts';
import { biggestOwnFirst } from '../../../shared/space-order.ts';

/** Colours and font read from the theme's CSS variables (ECharts draws on a canvas and cannot use them). */
export interface ChartPalette {
  text: string;
  textSecondary: string;
  grid: string;
  surface: string;
  font: string;
  virtual: string;
  data: string;
  shared: string;
  metadata: string;
  leaked: string;
  free: string;
  unwritten: string;
  current: string;
  highlight: string;
}

export interface SpaceFigures {
  virtualSize: number;
  allocatedBytes: number;
  fileSize: number;
  /** Allocated clusters holding guest data: allocated less metadata, leaks and clusters never written. */
  guestDataBytes: number;
  /** Allocated data clusters in holes of the file (preallocated, never written): they read zeros and take no space. */
  unwrittenBytes: number;
  metadataBytes: number;
  leakedBytes: number;
  /** Bytes of the file no cluster uses (holes, a tail past the last allocation). */
  unusedFileBytes: number;
  /** What the file takes on its file system, where known. */
  bytesOnDisk: number | null;
}

export function spaceFigures(usage: UsageReport): SpaceFigures {
  const unwrittenBytes = usage.unwrittenBytes ?? 0;
  const guestDataBytes = Math.max(0, usage.allocatedBytes - usage.metadataBytes - usage.leakedBytes - unwrittenBytes);
  return {
    virtualSize: usage.virtualSize,
    allocatedBytes: usage.allocatedBytes,
    fileSize: usage.fileSize,
    guestDataBytes,
    unwrittenBytes,
    metadataBytes: usage.metadataBytes,
    leakedBytes: usage.leakedBytes,
    unusedFileBytes: Math.max(0, usage.fileSize - usage.allocatedBytes),
    bytesOnDisk: usage.bytesOnDisk ?? null,
  };
}

function baseOption(palette: ChartPalette): EChartsOption {
  return {
    animation: false,
    textStyle: { fontFamily: palette.font, color: palette.text, fontSize: 12 },
    // Tooltips drawn on the canvas: the HTML ones carry inline style attributes the page's CSP refuses.
    tooltip: {
      trigger: 'item',
      renderMode: 'richText',
      backgroundColor: palette.surface,
      borderColor: palette.grid,
      textStyle: { color: palette.text, fontFamily: palette.font, fontSize: 12 },
    },
  };
}

/** Steps along a bytes axis at most, where the chart is wide enough for their labels. */
const AXIS_STEPS = 3;

/**
 * A bytes axis from 0 in steps of a power of two, so its labels read as the disk's own units
 * (256 MiB, 512 MiB, 1 GiB) where a decimal scale would label 477 MiB and 954 MiB; the end is
 * the first step at or past the largest bar, never more than `steps` steps.
 */
export function binaryAxisScale(largestBytes: number, steps = AXIS_STEPS): { max: number; interval: number } {
  if (!(largestBytes > 0)) return { max: 1, interval: 1 };
  const interval = 2 ** Math.max(0, Math.ceil(Math.log2(largestBytes / steps)));
  return { max: Math.ceil(largestBytes / interval) * interval, interval };
}

const bytesAxis = (palette: ChartPalette, largestBytes: number, steps = AXIS_STEPS) =>
  ({
    type: 'value',
    min: 0,
    ...binaryAxisScale(largestBytes, steps),
    // Nothing to measure (an empty disk): no scale of "0 B … 1 B".
    axisLabel: { show: largestBytes > 0, color: palette.textSecondary, hideOverlap: true, formatter: (value: number) => formatBytes(value) },
    splitLine: { lineStyle: { color: palette.grid } },
  }) as const;

/** Virtual size against what the file allocates (guest data, metadata, leaks) and its size on disk. */
export function spaceSummaryOption(usage: UsageReport, palette: ChartPalette): EChartsOption {
  const figures = spaceFigures(usage);
  const rows = [
    `Virtual disk  ${formatBytes(figures.virtualSize)}`,
    `Allocated  ${formatBytes(figures.allocatedBytes)}`,
    `File  ${formatBytes(figures.fileSize)}`,
  ];
  const segment = (name: string, color: string, values: [number | null, number | null, number | null]) => ({
    name,
    type: 'bar' as const,
    stack: 'space',
    barWidth: 16,
    barMinHeight: 2,
    itemStyle: { color },
    // Nothing drawn for 0 bytes: barMinHeight would still draw a sliver (a red "Leaked" one on every disk without leaks).
    data: values.map((value) => (value === null || value === 0 ? null : { value })),
    tooltip: { formatter: (params: { value?: unknown }) => `${name}\n${formatBytesExact(Number(params.value))}` },
  });
  return {
    ...baseOption(palette),
    grid: { left: 8, right: 16, top: 8, bottom: 4, containLabel: true },
    legend: { show: false },
    xAxis: bytesAxis(palette, Math.max(figures.virtualSize, figures.allocatedBytes, figures.allocatedBytes + figures.unusedFileBytes)),
    yAxis: {
      type: 'category',
      inverse: true,
      data: rows,
      axisTick: { show: false },
      axisLine: { lineStyle: { color: palette.grid } },
      axisLabel: { color: palette.text },
    },
    series: [
      segment('Virtual size', palette.virtual, [figures.virtualSize, null, null]),
      segment('Guest data', palette.data, [null, figures.guestDataBytes, figures.guestDataBytes]),
      ...(figures.unwrittenBytes > 0 ? [segment('Never written', palette.unwritten, [null, figures.unwrittenBytes, figures.unwrittenBytes])] : []),
      segment('Metadata', palette.metadata, [null, figures.metadataBytes, figures.metadataBytes]),
      segment('Leaked', palette.leaked, [null, figures.leakedBytes, figures.leakedBytes]),
      segment('Unused in file', palette.free, [null, null, figures.unusedFileBytes]),
    ],
  };
}

export interface SnapshotSpaceRow {
  /** A snapshot id, 'current' for the current state, or 'others' for the rest taken together. */
  id: string;
  label: string;
  kind: 'snapshot' | 'current' | 'others';
  exclusiveBytes: number;
  sharedBytes: number;
}

/**
 * One row per snapshot and one for the current state, biggest own data first (then most shared):
 * what deleting each would free. Past `limit` rows the rest are summed into one.
 */
export function snapshotSpaceRows(usage: UsageReport, limit = 12): SnapshotSpaceRow[] {
  const rows: SnapshotSpaceRow[] = [
    { id: 'current', label: 'Current state', kind: 'current', ...usage.current },
    ...usage.snapshots.map((snapshot) => ({
      id: snapshot.id,
      label: shownName(snapshot.name),
      kind: 'snapshot' as const,
      exclusiveBytes: snapshot.exclusiveBytes,
      sharedBytes: snapshot.sharedBytes,
    })),
  ];
  rows.sort(biggestOwnFirst);
  if (rows.length <= limit) return rows;
  const shown = rows.slice(0, limit - 1);
  const rest = rows.slice(limit - 1);
  // Own bytes add up across snapshots; shared ones do not (the same cluster counts in each), so the rest shows only its own.
  shown.push({
    id: 'others',
    label: `${rest.length} more`,
    kind: 'others',
    exclusiveBytes: rest.reduce((sum, row) => sum + row.exclusiveBytes, 0),
    sharedBytes: 0,
  });
  return shown;
}

const MAX_LABEL = 22;
const LABEL_PIXELS = 120;

export interface LegendEntry {
  name: string;
  color: string;
}

/** What the bars' colours mean; the current state's own bytes have a colour of their own (the tree's "You are here"). */
export function snapshotSpaceLegend(rows: readonly SnapshotSpaceRow[], palette: ChartPalette): LegendEntry[] {
  return [
    { name: 'Only in this state', color: palette.data },
    ...(rows.some((row) => row.kind === 'current') ? [{ name: 'Only in the current state', color: palette.current }] : []),
    { name: 'Shared', color: palette.shared },
  ];
}

function shortLabel(label: string): string {
  return label.length > MAX_LABEL ? `${label.slice(0, MAX_LABEL - 1)}…` : label;
}

/**
 * Stacked bars per row: the bytes only this snapshot holds, then the bytes it shares. A narrow
 * chart (the tree's side panel) asks for fewer axis steps, so each keeps its label.
 */
export function snapshotSpaceOption(rows: readonly SnapshotSpaceRow[], palette: ChartPalette, highlightedId: string | null = null, axisSteps = AXIS_STEPS): EChartsOption {
  const emphasis = (row: SnapshotSpaceRow, color: string) => ({
    value: row.exclusiveBytes,
    itemStyle: { color, ...(row.id === highlightedId ? { borderColor: palette.highlight, borderWidth: 2 } : {}) },
  });
  const ownColor = (row: SnapshotSpaceRow): string => (row.kind === 'current' ? palette.current : palette.data);
  const tooltip = (what: string) => ({
    formatter: (params: { dataIndex: number; value?: unknown }) => {
      const row = rows[params.dataIndex];
      return row ? `${row.label}\n${what}: ${formatBytesExact(Number(params.value))}` : '';
    },
  });
  return {
    ...baseOption(palette),
    // The legend is the component's (HTML, so a narrow card wraps it and the bars move down).
    grid: { left: 8, right: 16, top: 8, bottom: 4, containLabel: true },
    legend: { show: false },
    xAxis: bytesAxis(palette, Math.max(0, ...rows.map((row) => row.exclusiveBytes + row.sharedBytes)), axisSteps),
    yAxis: {
      type: 'category',
      inverse: true,
      data: rows.map((row) => shortLabel(row.label)),
      // Names are hover targets too: a snapshot with a tiny bar is still easy to point at.
      triggerEvent: true,
      axisTick: { show: false },
      axisLine: { lineStyle: { color: palette.grid } },
      // At most a third of a side card: a long name squeezed the bars until the axis lost its labels (UI audit 12).
      axisLabel: { color: palette.text, width: LABEL_PIXELS, overflow: 'truncate' },
    },
    series: [
      {
        name: 'Only in this state',
        type: 'bar',
        stack: 'bytes',
        barWidth: 12,
        itemStyle: { color: palette.data },
        data: rows.map((row) => emphasis(row, ownColor(row))),
        tooltip: tooltip('only here'),
      },
      {
        name: 'Shared',
        type: 'bar',
        stack: 'bytes',
        barWidth: 12,
        itemStyle: { color: palette.shared },
        data: rows.map((row) => ({
          value: row.sharedBytes,
          itemStyle: { color: palette.shared, ...(row.id === highlightedId ? { borderColor: palette.highlight, borderWidth: 2 } : {}) },
        })),
        tooltip: tooltip('shared'),
      },
    ],
  };
}
