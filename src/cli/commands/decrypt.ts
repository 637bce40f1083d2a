import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import type { Command } from '../command.ts';
import { qcow2EncryptionOf } from '../passphrase-input.ts';
import { REWRITE_OPTIONS, rewriteTarget, runRewrite, snapshotsKept } from '../rewrite-command.ts';

/**
 * `cowbell decrypt IMAGE [OUTPUT]`: the disk stored unencrypted, keeping every snapshot (qemu-img
 * can only convert to a new file, dropping them). LUKS and legacy AES disks alike; compressed
 * clusters stay compressed.
 */
export const decrypt: Command = {
  name: 'decrypt',
  summary: 'store an encrypted disk (LUKS or old AES) unencrypted keeping every snapshot, in place or into OUTPUT',
  usage: '[-p] [-q] [--json] [--passphrase-file FILE] [--no-verify] [--drop-bitmaps] [-t CACHE] [--force] IMAGE [OUTPUT]',
  options: REWRITE_OPTIONS,
  positionals: { min: 1, max: 2 },
  async run(args, io) {
    const source = args.positionals[0] ?? '';
    if (qcow2EncryptionOf(source) === null) throw new Qcow2Error('INVALID_ARGUMENT', `${source} is not encrypted; there is nothing to decrypt`);
    return runRewrite(args, io, { compression: 'keep', encryption: { kind: 'none' } }, { describe: (result) => `${rewriteTarget(result)}: decrypted (stored unencrypted), ${snapshotsKept(result)}` });
  },
};
