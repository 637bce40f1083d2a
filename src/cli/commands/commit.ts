import { commitSteps } from '../../shared/qcow2/chain/commit.ts';
import { formatBytes } from '../../shared/format-units.ts';
import type * as RewriteModule from '../../shared/qcow2/rewrite/rewrite.ts';
import { runStepsYielding } from '../../shared/qcow2/steps.ts';
import { flag, option } from '../args.ts';
import { runCancellably, StoppedBySignal, withProgressLine } from '../cancellable-job.ts';
import { EXIT_OK, UsageError, type CliIo, type Command } from '../command.ts';
import { cacheMode } from '../cache-mode.ts';
import { PASSPHRASE_OPTIONS, withUnlock, type Unlock } from '../passphrase-input.ts';
import { cliRuntime } from '../runtime.ts';

/**
 * `cowbell commit [-b BASE] [-d] IMAGE`, as `qemu-img commit`: the overlay's data goes into its
 * backing file (or BASE), then the overlay is emptied unless -d; -b implies -d, as in qemu-img
 * (whichever file BASE is). Refused while a VM uses any file of the chain. Encrypted files of the
 * chain open with one passphrase (--passphrase-file, or asked on the terminal when one is met).
 */
export const commit: Command = {
  name: 'commit',
  summary: "write an overlay's data into its backing file and empty it (-d keeps it)",
  usage: '[-f qcow2] [-b BASE] [-d] [-p] [-q] [--passphrase-file FILE] [--force] IMAGE',
  options: {
    format: { type: 'string', short: 'f' },
    base: { type: 'string', short: 'b' },
    drop: { type: 'boolean', short: 'd' },
    progress: { type: 'boolean', short: 'p' },
    quiet: { type: 'boolean', short: 'q' },
    // qemu-img's cache mode, taken for its scripts: an in-place change is flushed whatever it says.
    cache: { type: 'string', short: 't' },
    force: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...PASSPHRASE_OPTIONS,
  },
  positionals: { min: 1, max: 1 },
  async run(args, io) {
    const format = option(args, 'format');
    if (format !== undefined && format !== 'qcow2') throw new UsageError(`commit: only a qcow2 overlay can be committed, not ${format}`);
    cacheMode(option(args, 'cache'));
    const image = args.positionals[0] ?? '';
    const showProgress = flag(args, 'progress') && !flag(args, 'quiet');
    const base = option(args, 'base');
    // The passphrase is zeroed once the work settles: the compaction of an encrypted overlay needs it too.
    const code = await withUnlock(args, io, image, async (unlock) => {
      const result = await withProgressLine(io, showProgress, (onProgress) =>
        runCancellably(
          async (job) => runStepsYielding(commitSteps({ image, ...(base !== undefined ? { base } : {}), keepOverlay: flag(args, 'drop') || base !== undefined, ...unlock }, job)),
          oneCount(onProgress),
          'Cancelled; the overlay still holds its data (part of it may already be in the backing file)',
        ),
      );
      // Without a second progress line: qemu-img commit -p counts to 100% once (the compaction is the commit's tail).
      return result.worthCompacting ? await giveBackFreeSpace(image, result.freeBytesLeft, io, false, unlock) : EXIT_OK;
    });
    if (!flag(args, 'quiet')) io.out('Image committed.\n');
    return code;
  },
};

/**
 * The commit's two passes (the copy, then emptying the overlay) as one count to 100%, as qemu-img
 * commit -p shows it: the copy to 90%, the emptying the rest.
 */
function oneCount(onProgress: (stage: string, done: number, total: number) => void): (stage: string, done: number, total: number) => void {
  const STEPS = 10_000;
  return (stage, done, total) => {
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const overall = stage === 'empty overlay' ? 0.9 + 0.1 * fraction : 0.9 * fraction;
    onProgress('commit', Math.round(overall * STEPS), STEPS);
  };
}

/** The rewrite engine, loaded only when an emptied overlay is compacted: most commits never need it, and loading it costs each one ~10 ms. */
const rewriteModule = (): Promise<typeof RewriteModule> => import('../../shared/qcow2/rewrite/rewrite.ts');

/**
 * The emptied overlay compacted in place (as `cowbell compact`), so its file shrinks to its header
 * and tables as qemu-img's does. The commit is done whatever happens here: a failure is a note.
 */
async function giveBackFreeSpace(image: string, freeBytes: number, io: CliIo, showProgress: boolean, unlock: Unlock): Promise<number> {
  try {
    await withProgressLine(io, showProgress, (onProgress) =>
      runCancellably(
        async (job) => runStepsYielding((await rewriteModule()).rewriteSteps({ source: image, compression: 'keep', earlyVerifyWorker: cliRuntime.earlyVerifyWorker, ...unlock }, job)),
        onProgress,
        'Cancelled',
      ),
    );
    return EXIT_OK;
  } catch (error) {
    io.err(`cowbell: note: the commit is done, but the emptied overlay still holds ${formatBytes(freeBytes)} it does not use (giving it back failed: ${(error as Error).message}); \`cowbell compact\` gives it back later, into a new file where it cannot replace this one (\`cowbell compact ${image} OUTPUT\`)\n`);
    return error instanceof StoppedBySignal ? error.exitCode : EXIT_OK;
  }
}
