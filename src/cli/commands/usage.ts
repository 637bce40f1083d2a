import { formatBytes } from '../../shared/format-units.ts';
import { biggestOwnFirst } from '../../shared/space-order.ts';
import { readUsage } from '../../shared/qcow2/snapshots/operations.ts';
import type { UsageReport } from '../../shared/qcow2/model.ts';
import { flag, refuseFormatOtherThanQcow2 } from '../args.ts';
import { EXIT_OK, type Command } from '../command.ts';
import { printable } from '../printable.ts';

export const usage: Command = {
  name: 'usage',
  summary: 'where the space goes: current state, each snapshot, metadata, leaks',
  usage: '[--json] [-f qcow2] [-U] IMAGE',
  options: {
    json: { type: 'boolean' },
    format: { type: 'string', short: 'f' },
    'force-share': { type: 'boolean', short: 'U' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 1 },
  // What it prints is its result: output it could not write fails it.
  printsItsResult: () => true,
  async run(args, io) {
    refuseFormatOtherThanQcow2(args, 'usage');
    const report = readUsage(args.positionals[0] ?? '', undefined, { refuseInUse: !flag(args, 'force-share') });
    io.out(flag(args, 'json') ? `${JSON.stringify(report, null, 2)}\n` : describeUsage(report));
    if (report.staleRefcounts === true) io.err('cowbell: warning: the image was not closed cleanly (lazy refcounts): these figures come from refcounts that may be stale; `cowbell check -r all` makes them right\n');
    return EXIT_OK;
  },
};

export function describeUsage(report: UsageReport): string {
  const lines = [
    `virtual size:   ${formatBytes(report.virtualSize)}`,
    `file size:      ${formatBytes(report.fileSize)}`,
    ...(report.bytesOnDisk === undefined ? [] : [`on disk:        ${formatBytes(report.bytesOnDisk)}`]),
    `allocated:      ${formatBytes(report.allocatedBytes)}`,
    ...(report.unwrittenBytes === undefined ? [] : [`never written:  ${formatBytes(report.unwrittenBytes)} (preallocated clusters in holes of the file: they read zeros and take no space)`]),
    `metadata:       ${formatBytes(report.metadataBytes)}`,
    `leaked:         ${formatBytes(report.leakedBytes)}`,
    `current state:  own ${formatBytes(report.current.exclusiveBytes)}, shared ${formatBytes(report.current.sharedBytes)}`,
  ];
  const sorted = [...report.snapshots].sort(biggestOwnFirst);
  for (const entry of sorted) lines.push(`snapshot ${printable(entry.name)}: own ${formatBytes(entry.exclusiveBytes)}, shared ${formatBytes(entry.sharedBytes)}`);
  return `${lines.join('\n')}\n`;
}
