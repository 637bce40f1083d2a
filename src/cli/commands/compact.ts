import { flag } from '../args.ts';
import type { Command } from '../command.ts';
import { REWRITE_OPTIONS, runRewrite } from '../rewrite-command.ts';

/**
 * `cowbell compact IMAGE [OUTPUT]`: reclaim what the file holds for nothing (leaked clusters, the
 * holes deleted snapshots left, all-zero clusters) and lay the data out in guest order, keeping every
 * snapshot. Compressed clusters stay compressed unless --uncompress.
 */
export const compact: Command = {
  name: 'compact',
  summary: 'reclaim unused space and defragment a disk keeping every snapshot, in place or into OUTPUT',
  usage: '[-p] [-q] [--json] [--uncompress] [--no-verify] [--drop-bitmaps] [-t CACHE] [--passphrase-file FILE] [--force] IMAGE [OUTPUT]',
  options: { ...REWRITE_OPTIONS, uncompress: { type: 'boolean' } },
  positionals: { min: 1, max: 2 },
  async run(args, io) {
    return runRewrite(args, io, { compression: flag(args, 'uncompress') ? 'uncompress' : 'keep' });
  },
};
