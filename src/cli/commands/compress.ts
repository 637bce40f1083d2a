import type { Command } from '../command.ts';
import { REWRITE_OPTIONS, rewriteImageOptions, runRewrite } from '../rewrite-command.ts';
import { optionsHelp, REWRITE_COMPAT_HELP } from '../image-options.ts';

/**
 * `cowbell compress IMAGE [OUTPUT]`: every data cluster of every state compressed where that saves
 * space, keeping every snapshot (qemu-img convert -c drops them). In place without OUTPUT: the disk
 * is replaced only once the new one is complete, checked and verified.
 */
export const compress: Command = {
  name: 'compress',
  summary: 'compress a disk keeping every snapshot, in place or into OUTPUT',
  usage: '[-p] [-q] [--json] [-o compression_type=zlib|zstd,compat=1.1] [--no-verify] [--drop-bitmaps] [-t CACHE] [--passphrase-file FILE] [--force] IMAGE [OUTPUT]',
  options: { ...REWRITE_OPTIONS, options: { type: 'string', short: 'o', multiple: true } },
  positionals: { min: 1, max: 2 },
  optionsHelp: optionsHelp(['compat', 'compression_type'], [REWRITE_COMPAT_HELP]),
  async run(args, io) {
    const raw = args.values.options;
    const values = Array.isArray(raw) ? raw.filter((value): value is string => typeof value === 'string') : [];
    return runRewrite(args, io, { compression: 'compress', ...rewriteImageOptions(values, 'compress', ['compression_type', 'compat']) });
  },
};
