import type { LuksCipherChoice } from '../../shared/qcow2/crypto/luks-keys.ts';
import type { RewriteResult } from '../../shared/qcow2/rewrite/rewrite.ts';
import { flag, option } from '../args.ts';
import { chainFilesBelow } from '../chain-encryption.ts';
import { UsageError, type Command } from '../command.ts';
import { printable } from '../printable.ts';
import { LUKS_OPTION_NAMES, luksOptionsFromArgs, optionsHelp } from '../image-options.ts';
import { currentPassphrases, encryptionOf, explainBadPassphrase, NEW_PASSPHRASE_OPTIONS, newPassphrase, withFirstPassphrase } from '../passphrase-input.ts';
import { executeRewrite, REWRITE_OPTIONS, reportRewrite, rewriteTarget, snapshotsKept } from '../rewrite-command.ts';

/**
 * `cowbell encrypt IMAGE [OUTPUT]`: the disk encrypted with LUKS as QEMU encrypts it (by default
 * aes-256-xts-plain64, PBKDF2-SHA256, a key slot timed to 2 s), keeping every snapshot — which
 * qemu-img cannot (its only way is convert, which drops them). Every cluster is encrypted for its
 * new place; compressed clusters are stored uncompressed and encrypted. A legacy AES disk migrates
 * to LUKS; a LUKS disk gets a new master key (and the cipher asked for).
 *
 * Passphrases: a plain disk's new one from --new-passphrase-file or --passphrase-file (either), an
 * encrypted disk's current one from --passphrase-file and the new one from --new-passphrase-file;
 * whatever no file gives is asked on the terminal (the new one twice).
 */
export const encrypt: Command = {
  name: 'encrypt',
  summary: 'encrypt a disk with LUKS keeping every snapshot (also moves old AES disks to LUKS), in place or into OUTPUT',
  usage:
    '[-p] [-q] [--json] [-o encrypt.cipher-alg=aes-128|aes-192|aes-256,encrypt.cipher-mode=xts|cbc,encrypt.ivgen-alg=plain|plain64|essiv,encrypt.ivgen-hash-alg=sha256,encrypt.hash-alg=sha1|sha256|sha512,encrypt.iter-time=MS] ' +
    '[--passphrase-file FILE] [--new-passphrase-file FILE] [--no-verify] [--drop-bitmaps] [-t CACHE] [--force] IMAGE [OUTPUT]',
  options: { ...REWRITE_OPTIONS, ...NEW_PASSPHRASE_OPTIONS, options: { type: 'string', short: 'o', multiple: true } },
  positionals: { min: 1, max: 2 },
  optionsHelp: optionsHelp(LUKS_OPTION_NAMES),
  async run(args, io) {
    const source = args.positionals[0] ?? '';
    const raw = args.values.options;
    const luks = luksOptionsFromArgs(Array.isArray(raw) ? raw.filter((value): value is string => typeof value === 'string') : [], 'encrypt');
    const encrypted = encryptionOf(source);
    let current: Uint8Array[] = [];
    let fresh: Uint8Array | undefined;
    try {
      if (encrypted === null) {
        if (option(args, 'passphrase-file') !== undefined && option(args, 'new-passphrase-file') !== undefined) {
          throw new UsageError(`encrypt: ${source} is not encrypted yet, so it has one passphrase to give: --passphrase-file or --new-passphrase-file, not both`);
        }
        fresh = await newPassphrase(args, io, source, option(args, 'passphrase-file') !== undefined ? 'passphrase-file' : 'new-passphrase-file');
      } else {
        current = await currentPassphrases(args, io, source);
        fresh = await newPassphrase(args, io, source);
      }
      const encryption = { kind: 'luks', passphrase: fresh, cipher: luks.cipher, hash: luks.hash, iterTimeMs: luks.iterTimeMs } as const;
      const rewrite = (passphrase: Uint8Array | undefined) => executeRewrite(args, io, { compression: 'keep', passphrase, trustLegacyPassphrase: flag(args, 'force'), encryption });
      const result = current.length === 0 ? await rewrite(undefined) : await withFirstPassphrase(current, rewrite);
      const code = reportRewrite(args, io, result, { describe: (done) => describeEncrypted(done, luks.cipher, luks.hash, encrypted) });
      const clear = chainFilesBelow(result.target).filter((file) => file.encryption === null).map((file) => file.path);
      if (clear.length > 0) io.err(clearBackingNote(result.target, clear));
      return code;
    } catch (error) {
      throw explainBadPassphrase(error, source);
    } finally {
      for (const candidate of current) candidate.fill(0);
      fresh?.fill(0);
    }
  },
};

function describeEncrypted(result: RewriteResult, cipher: LuksCipherChoice | undefined, hash: string | undefined, before: 'luks' | 'aes' | null): string {
  const chosen = cipher ?? { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64', ivHash: null };
  const ivgen = chosen.ivGenerator === 'essiv' ? `essiv:${chosen.ivHash ?? 'sha256'}` : chosen.ivGenerator;
  const how = `LUKS, aes-${chosen.aesKeyBits}-${chosen.mode}-${ivgen}, ${hash ?? 'sha256'}`;
  const what = before === 'aes' ? `moved from the old qcow2 AES encryption to ${how}` : before === 'luks' ? `encrypted afresh (${how}, a new master key)` : `encrypted (${how})`;
  return `${rewriteTarget(result)}: ${what}, ${snapshotsKept(result)}`;
}

/** What the passphrase does not protect: the disk reads through files that stay as they were. */
function clearBackingNote(target: string, clear: string[]): string {
  const names = clear.map((file) => printable(file)).join(', ');
  const them = clear.length === 1 ? 'it' : 'them';
  return `cowbell: note: ${printable(target)} reads through ${names}, which ${clear.length === 1 ? 'holds its' : 'hold their'} data in the clear: what the disk reads there is not protected by the passphrase (encrypt ${them} too, or \`cowbell convert -O qcow2\` the disk into one file and encrypt that)\n`;
}
