import { commitSteps } from '../../shared/qcow2/chain/commit.ts';
import { runStepsYielding } from '../../shared/qcow2/steps.ts';
import { flag, option } from '../args.ts';
import { runCancellably, withProgressLine } from '../cancellable-job.ts';
import { EXIT_OK, UsageError, type Command } from '../command.ts';

/**
 * `cowbell commit [-b BASE] [-d] IMAGE`, as `qemu-img commit`: the overlay's data goes into its
 * backing file (or BASE further down the chain, which implies -d), then the overlay is emptied
 * unless -d. Refused while a VM uses any file of the chain.
 */
export const commit: Command = {
  name: 'commit',
  summary: "write an overlay's data into its backing file and empty it (-d keeps it)",
  usage: '[-f qcow2] [-b BASE] [-d] [-p] [-q] IMAGE',
  options: {
    format: { type: 'string', short: 'f' },
    base: { type: 'string', short: 'b' },
    drop: { type: 'boolean', short: 'd' },
    progress: { type: 'boolean', short: 'p' },
    quiet: { type: 'boolean', short: 'q' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 1 },
  async run(args, io) {
    const format = option(args, 'format');
    if (format !== undefined && format !== 'qcow2') throw new UsageError(`commit: only a qcow2 overlay can be committed, not ${format}`);
    const image = args.positionals[0] ?? '';
    const showProgress = flag(args, 'progress') && !flag(args, 'quiet');
    const base = option(args, 'base');
    await withProgressLine(io, showProgress, (onProgress) =>
      runCancellably(
        async (job) => runStepsYielding(commitSteps({ image, ...(base !== undefined ? { base } : {}), keepOverlay: flag(args, 'drop') }, job)),
        onProgress,
        'Cancelled; the overlay still holds its data (part of it may already be in the backing file)',
      ),
    );
    if (!flag(args, 'quiet')) io.out('Image committed.\n');
    return EXIT_OK;
  },
};
