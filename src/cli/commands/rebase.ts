import { rebaseSteps } from '../../shared/qcow2/chain/rebase.ts';
import { resolveBackingPath } from '../../shared/qcow2/image/image.ts';
import { requiredBackingFormat } from '../backing-format.ts';
import { runStepsYielding } from '../../shared/qcow2/steps.ts';
import { flag, option } from '../args.ts';
import { runCancellably, withProgressLine } from '../cancellable-job.ts';
import { cacheMode } from '../cache-mode.ts';
import { EXIT_OK, UsageError, type Command } from '../command.ts';
import { PASSPHRASE_OPTIONS, withUnlock } from '../passphrase-input.ts';

/**
 * `cowbell rebase -b NEW [-F FMT] [-u] IMAGE`, as `qemu-img rebase`: safe mode copies into the
 * overlay whatever the old and new backing chains read differently, so the guest sees the same
 * disk; -u only rewrites the header. `-b ""` leaves the overlay without a backing file. A new
 * backing file needs -F, as in qemu-img 7.2 (backing-format.ts: the format is never guessed).
 * A safe rebase opens the encrypted files of both chains with one passphrase (--passphrase-file, or
 * asked on the terminal when one is met); -u reads no data and asks for none.
 */
export const rebase: Command = {
  name: 'rebase',
  summary: 'give an overlay another backing file, keeping its guest data (-u: header only)',
  usage: '[-f qcow2] -b NEW -F qcow2|raw [-u] [-p] [-q] [--passphrase-file FILE] [--force] IMAGE   (-b "" for no backing file: no -F)',
  options: {
    format: { type: 'string', short: 'f' },
    backing: { type: 'string', short: 'b' },
    'backing-format': { type: 'string', short: 'F' },
    unsafe: { type: 'boolean', short: 'u' },
    progress: { type: 'boolean', short: 'p' },
    quiet: { type: 'boolean', short: 'q' },
    // qemu-img's cache modes, taken for its scripts: an in-place change is flushed whatever they say.
    cache: { type: 'string', short: 't' },
    'source-cache': { type: 'string', short: 'T' },
    force: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...PASSPHRASE_OPTIONS,
  },
  positionals: { min: 1, max: 1 },
  async run(args, io) {
    const format = option(args, 'format');
    if (format !== undefined && format !== 'qcow2') throw new UsageError(`rebase: only a qcow2 overlay can be rebased, not ${format}`);
    cacheMode(option(args, 'cache'));
    cacheMode(option(args, 'source-cache'));
    const backing = option(args, 'backing');
    if (backing === undefined) throw new UsageError('rebase: give the new backing file with -b (-b "" for none)');
    const image = args.positionals[0] ?? '';
    const backingFormat = backing === '' ? undefined : requiredBackingFormat('rebase', option(args, 'backing-format'), resolveBackingPath(image, backing));
    const showProgress = flag(args, 'progress') && !flag(args, 'quiet');
    await withUnlock(args, io, image, (unlock) =>
      withProgressLine(io, showProgress, (onProgress) =>
        runCancellably(
          async (job) =>
            runStepsYielding(
              rebaseSteps({ image, backingFile: backing === '' ? null : backing, ...(backingFormat !== undefined ? { backingFormat } : {}), unsafe: flag(args, 'unsafe'), ...unlock }, job),
            ),
          onProgress,
          'Cancelled; the overlay still names its old backing file and reads as before',
        ),
      ),
    );
    return EXIT_OK;
  },
};
