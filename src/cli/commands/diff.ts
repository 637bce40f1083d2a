import { formatBytes } from '../../shared/format-units.ts';
import { readDiff } from '../../shared/qcow2/snapshots/operations.ts';
import { flag } from '../args.ts';
import { EXIT_OK, type Command } from '../command.ts';
import { snapshotRefOf } from '../snapshot-ref.ts';

export const diff: Command = {
  name: 'diff',
  summary: 'the guest ranges that differ between two snapshots (or a snapshot and "current")',
  usage: '[--json] [-U] IMAGE A B',
  options: {
    json: { type: 'boolean' },
    'force-share': { type: 'boolean', short: 'U' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 3, max: 3 },
  // What it prints is its result: output it could not write fails it.
  printsItsResult: () => true,
  async run(args, io) {
    const [image = '', from = '', to = ''] = args.positionals;
    const result = readDiff(image, snapshotRefOf(from), snapshotRefOf(to), undefined, { refuseInUse: !flag(args, 'force-share') });
    if (flag(args, 'json')) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else {
      const lines = result.ranges.map((range) => `${String(range.offset).padStart(14)} ${String(range.length).padStart(12)}`);
      lines.push(`${result.ranges.length} range${result.ranges.length === 1 ? '' : 's'}, ${formatBytes(result.bytes)} differ`);
      io.out(`${lines.join('\n')}\n`);
    }
    return EXIT_OK;
  },
};
