import { formatBytes } from '../../shared/format-units.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { readImageInfo } from '../../shared/qcow2/image/info.ts';
import type { ResizePreview } from '../../shared/qcow2/model.ts';
import { readResizePreview, resizeImagePath } from '../../shared/qcow2/snapshots/resize.ts';
import { flag, option } from '../args.ts';
import { finishingFirst } from '../cancellable-job.ts';
import { EXIT_OK, UsageError, type Command } from '../command.ts';
import { parseSize } from '../image-options.ts';
import { PASSPHRASE_OPTIONS, withUnlock } from '../passphrase-input.ts';

/**
 * `cowbell resize IMAGE [+|-]SIZE`, as qemu-img's: a smaller size needs --shrink. Unlike qemu-img,
 * a shrink that would drop data the disk holds past its new end is refused, with how much and
 * where, unless --discard-data is given too. Snapshots keep their own size and data.
 */
export const resize: Command = {
  name: 'resize',
  summary: 'grow or shrink a disk (a shrink refuses to drop data past the new end unless --discard-data)',
  usage: '[-f qcow2] [--shrink [--discard-data]] [-q] [--json] [--passphrase-file FILE] [--force] IMAGE [+|-]SIZE',
  options: {
    format: { type: 'string', short: 'f' },
    shrink: { type: 'boolean' },
    'discard-data': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
    json: { type: 'boolean' },
    force: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...PASSPHRASE_OPTIONS,
  },
  positionals: { min: 2, max: 2 },
  // As qemu-img does, the last argument is the size, so that "-10G" is not read as options.
  prepareArgv(argv) {
    const last = argv[argv.length - 1];
    if (last === undefined || !/^-\d/.test(last) || argv.includes('--')) return argv;
    return [...argv.slice(0, -1), '--', last];
  },
  async run(args, io) {
    const format = option(args, 'format') ?? 'qcow2';
    if (format !== 'qcow2') throw new UsageError(`resize: Cowbell resizes qcow2 images only (not ${format})`);
    const [imagePath = '', sizeText = ''] = args.positionals;
    const newSize = targetSize(sizeText, () => readImageInfo(imagePath, { refuseInUse: false })['virtual-size']);
    const shrink = flag(args, 'shrink');
    const discardData = flag(args, 'discard-data');
    if (discardData && !shrink) throw new UsageError('resize: --discard-data goes with --shrink');
    const result = await withUnlock(args, io, imagePath, async (unlock) => {
      try {
        return await finishingFirst(io, () => resizeImagePath(imagePath, newSize, { shrink, discardData }, undefined, unlock));
      } catch (error) {
        // The refusal says how much data lies past the end; say in which states too.
        if (error instanceof Qcow2Error && error.code === 'DATA_PAST_END') throw new Qcow2Error('DATA_PAST_END', describeRefusal(readResizePreview(imagePath, newSize, undefined, unlock)));
        throw error;
      }
    });
    if (flag(args, 'json')) io.out(`${JSON.stringify(result, null, 2)}\n`);
    else if (!flag(args, 'quiet')) {
      io.out('Image resized.\n');
      if (result.discardedBytes > 0) io.out(`Discarded ${formatBytes(result.discardedBytes)} of data past the new end.\n`);
    }
    return EXIT_OK;
  },
};

/** SIZE, +SIZE (grow by) or -SIZE (shrink by), in bytes. */
function targetSize(text: string, currentSize: () => number): number {
  const sign = text.startsWith('+') ? 1 : text.startsWith('-') ? -1 : 0;
  const amount = parseSize(sign === 0 ? text : text.slice(1));
  const size = sign === 0 ? amount : currentSize() + sign * amount;
  if (size <= 0) throw new UsageError('resize: the new size must be positive');
  return size;
}

function describeRefusal(preview: ResizePreview): string {
  const lines = [`Shrinking from ${preview.currentSize} to ${preview.newSize} bytes would drop data past the new end; nothing was changed.`];
  for (const state of preview.pastEnd) {
    const where = state.state === 'current' ? 'current disk' : `snapshot ${state.id ?? ''} "${state.name ?? ''}"`;
    const fate = state.kept ? 'kept: the snapshot keeps its own size' : 'would be lost';
    lines.push(`  ${where}: ${state.bytes} bytes (${formatBytes(state.bytes)}) past the new end, ${fate}`);
  }
  lines.push('Shrink the partition and file system inside the guest first, or pass --discard-data to drop it.');
  return lines.join('\n');
}
