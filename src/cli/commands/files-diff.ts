import { formatBytes } from '../../shared/format-units.ts';
import { diffStatesByName } from '../../shared/qcow2/files/files-diff.ts';
import type { GuestFileDifference, GuestFilesDiff } from '../../shared/qcow2/model.ts';
import { readDiff } from '../../shared/qcow2/snapshots/operations.ts';
import { flag } from '../args.ts';
import { runCancellably } from '../cancellable-job.ts';
import { EXIT_OK, type Command } from '../command.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { stateFilesOpener } from '../image-state.ts';
import { PASSPHRASE_OPTIONS, VOLUME_PASSPHRASE_HELP, VOLUME_PASSPHRASE_OPTIONS, withUnlock, withVolumePassphrases } from '../passphrase-input.ts';
import { printableListed, printableMessage } from '../printable.ts';
import { snapshotRefOf } from '../snapshot-ref.ts';
import { widest } from '../text-columns.ts';

export const filesDiff: Command = {
  name: 'files-diff',
  summary: 'the files that differ between two snapshots (or a snapshot and "current"): added, removed, changed',
  usage: '[--json] [-U] [--passphrase-file FILE] [--volume-passphrase-file FILE]... IMAGE A B',
  help: [
    'A and B are snapshot names or ids, or "current". Lines read: + added, - removed, M changed',
    '(with what changed: size, mtime, content, kind, target, mode). Content is compared where the guest',
    'ranges that differ between the two states touch a file. Folders end in "/".',
  ].join('\n') + `\n${VOLUME_PASSPHRASE_HELP}`,
  options: {
    json: { type: 'boolean' },
    'force-share': { type: 'boolean', short: 'U' },
    ...PASSPHRASE_OPTIONS,
    ...VOLUME_PASSPHRASE_OPTIONS,
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 3, max: 3 },
  // What it prints is its result: output it could not write fails it.
  printsItsResult: () => true,
  async run(args, io) {
    const [image = '', from = '', to = ''] = args.positionals;
    const refuseInUse = !flag(args, 'force-share');
    const result = await withVolumePassphrases(args, io, (volumePassphrases) =>
      withUnlock(args, io, image, (unlock) =>
        runCancellably(
          (job) =>
            diffStatesByName(
              stateFilesOpener(args, io, image, unlock, { volumePassphrases }),
              from,
              to,
              () => readDiff(image, snapshotRefOf(from), snapshotRefOf(to), job, { refuseInUse }).ranges,
              job,
            ),
          () => {},
          'Cancelled',
        ),
      ),
    );
    // Nothing compared at all is no answer: a script would read "0 changed" as "the same files".
    const wholeDisk = result.skipped.find((skipped) => skipped.volume === '/' && skipped.path === undefined);
    if (wholeDisk !== undefined && result.differences.length === 0) throw new Qcow2Error('NO_FILESYSTEM', `Nothing could be compared: ${wholeDisk.reason}`);
    io.out(flag(args, 'json') ? `${JSON.stringify(result, null, 2)}\n` : describeFilesDiff(result));
    return EXIT_OK;
  },
};

const MARKS: Record<GuestFileDifference['change'], string> = { added: '+', removed: '-', changed: 'M' };

function sizeOf(difference: GuestFileDifference): string {
  if (difference.kind === 'directory') return '';
  if (difference.change === 'added') return formatBytes(difference.sizeAfter ?? 0);
  if (difference.change === 'removed') return formatBytes(difference.sizeBefore ?? 0);
  if (difference.sizeBefore === difference.sizeAfter) return formatBytes(difference.sizeAfter ?? 0);
  return `${formatBytes(difference.sizeBefore ?? 0)} -> ${formatBytes(difference.sizeAfter ?? 0)}`;
}

export function describeFilesDiff(result: GuestFilesDiff): string {
  const rows = result.differences.map((difference) => ({
    mark: MARKS[difference.change],
    path: printableListed(difference.kind === 'directory' ? `${difference.path}/` : difference.path),
    size: sizeOf(difference),
    reasons: difference.reasons === undefined ? '' : `  (${difference.reasons.join(', ')})`,
  }));
  const pathWidth = Math.min(60, widest(rows.map((row) => row.path)));
  const sizeWidth = widest(rows.map((row) => row.size));
  const lines = rows.map((row) => `${row.mark} ${row.path.padEnd(pathWidth)}  ${row.size.padStart(sizeWidth)}${row.reasons}`.trimEnd());
  const count = (change: GuestFileDifference['change']): number => result.differences.filter((difference) => difference.change === change).length;
  lines.push(`${count('added')} added, ${count('removed')} removed, ${count('changed')} changed; ${formatBytes(result.bytes)} involved (${result.from} -> ${result.to})`);
  for (const skipped of result.skipped) lines.push(`skipped ${printableListed(skipped.path ?? skipped.volume)}: ${printableMessage(skipped.reason)}`);
  return `${lines.join('\n')}\n`;
}
