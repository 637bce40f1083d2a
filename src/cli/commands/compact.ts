import { flag } from '../args.ts';
import type { Command } from '../command.ts';
import { REWRITE_OPTIONS, rewriteImageOptions, runRewrite } from '../rewrite-command.ts';
import { optionsHelp, REWRITE_COMPAT_HELP } from '../image-options.ts';

/**
 * `cowbell compact IMAGE [OUTPUT]`: reclaim what the file holds for nothing (leaked clusters, the
 * holes deleted snapshots left, all-zero clusters) and lay the data out in guest order, keeping every
 * snapshot. Compressed clusters stay compressed unless --uncompress. `-o compat=1.1` upgrades a
 * version 2 disk to version 3 on the way, as `qemu-img amend -o compat=1.1` does.
 */
export const compact: Command = {
  name: 'compact',
  summary: 'reclaim unused space and defragment a disk keeping every snapshot, in place or into OUTPUT',
  usage: '[-p] [-q] [--json] [--uncompress] [-o compat=1.1] [--no-verify] [--drop-bitmaps] [-t CACHE] [--passphrase-file FILE] [--force] IMAGE [OUTPUT]',
  options: { ...REWRITE_OPTIONS, uncompress: { type: 'boolean' }, options: { type: 'string', short: 'o', multiple: true } },
  positionals: { min: 1, max: 2 },
  optionsHelp: optionsHelp(['compat'], [REWRITE_COMPAT_HELP]),
  async run(args, io) {
    const raw = args.values.options;
    const values = Array.isArray(raw) ? raw.filter((value): value is string => typeof value === 'string') : [];
    return runRewrite(args, io, { compression: flag(args, 'uncompress') ? 'uncompress' : 'keep', ...rewriteImageOptions(values, 'compact', ['compat']) });
  },
};
