/**
 * What `cowbell convert --rescue` prints: the unreadable ranges as a short table and a total
 * (human), or all of them as JSON.
 */
import { formatBytes } from '../shared/format-units.ts';
import type { ConvertResult } from '../shared/qcow2/convert/convert.ts';
import type { UnreadableRange } from '../shared/qcow2/model.ts';

/** Rows the human table shows; --json lists every range. */
const TABLE_ROWS = 20;

export interface RescueReportJson {
  'virtual-size': number;
  'unreadable-bytes': number;
  unreadable: UnreadableRange[];
}

export function rescueReportJson(result: ConvertResult): RescueReportJson {
  const unreadable = result.unreadable ?? [];
  return { 'virtual-size': result.virtualSize, 'unreadable-bytes': unreadableBytes(unreadable), unreadable };
}

export function unreadableBytes(ranges: readonly UnreadableRange[]): number {
  return ranges.reduce((sum, range) => sum + range.length, 0);
}

export function describeRescue(result: ConvertResult, target: string): string {
  const ranges = result.unreadable ?? [];
  if (ranges.length === 0) return `Everything was read: ${target} holds the whole disk.\n`;
  const rows = ranges.slice(0, TABLE_ROWS).map((range) => [`0x${range.start.toString(16)}`, formatBytes(range.length), range.reason, range.detail]);
  const header = ['guest offset', 'length', 'reason', 'detail'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0))).join('  ');
  const lines = [line(header), ...rows.map(line)];
  if (ranges.length > TABLE_ROWS) lines.push(`… and ${ranges.length - TABLE_ROWS} more (--json lists them all)`);
  const total = unreadableBytes(ranges);
  const share = result.virtualSize > 0 ? ` (${((total * 100) / result.virtualSize).toFixed(2)}% of the disk)` : '';
  lines.push(`Unreadable: ${formatBytes(total)}${share} in ${ranges.length} range${ranges.length === 1 ? '' : 's'}, written as zeros in ${target}.`);
  return `${lines.join('\n')}\n`;
}
