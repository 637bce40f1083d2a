/**
 * Passphrases on the command line: from a file (`--passphrase-file`, `--new-passphrase-file`: the
 * whole file, one trailing newline dropped — for a disk's current passphrase, the whole file is
 * tried too when that opens nothing, as qemu's `--object secret,file=` keeps the newline) or typed
 * at a prompt that does not echo — never from
 * argv, where every user of the machine could read them (ps, /proc, shell history). Without a
 * file and without a terminal to ask on, a usage error says which option to use.
 *
 * A command asks only when the disk is encrypted and the engine says it needs the data (LOCKED):
 * what the engine refuses anyway (compressing an encrypted disk, …) is refused before any prompt.
 * The bytes are zeroed once the command is done with them.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Error, toQcow2Error } from '../shared/qcow2/errors.ts';
import type { VolumePassphrase } from '../shared/qcow2/files/encrypted-volumes.ts';
import { Qcow2Image } from '../shared/qcow2/image/image.ts';
import { closeQuietly } from '../shared/qcow2/io/block-file.ts';
import { detectFormat } from '../shared/qcow2/image/image-format.ts';
import { flag, option } from './args.ts';
import { UsageError, type CliIo, type ParsedArgs } from './command.ts';

export const PASSPHRASE_OPTIONS = {
  'passphrase-file': { type: 'string' },
} as const;

/** Passphrases of encrypted volumes inside the guest (LUKS): each file's is tried on every such volume. */
export const VOLUME_PASSPHRASE_OPTIONS = {
  'volume-passphrase-file': { type: 'string', multiple: true },
} as const;

/** The help lines of VOLUME_PASSPHRASE_OPTIONS. */
export const VOLUME_PASSPHRASE_HELP = [
  '  --volume-passphrase-file FILE  the passphrase of an encrypted volume inside the guest (LUKS1/2,',
  '              as an encrypted Linux install has): its files then read as the volume "luks-<UUID>"',
  '              (or its LVM logical volumes); repeat it for several. Tried on every encrypted volume.',
].join('\n');

/**
 * Runs `work` with the passphrases --volume-passphrase-file gives (each file read as
 * --passphrase-file's, one trailing newline dropped), zeroed when it settles.
 */
export async function withVolumePassphrases<T>(args: ParsedArgs, io: CliIo, work: (passphrases: VolumePassphrase[]) => Promise<T>): Promise<T> {
  const value = args.values['volume-passphrase-file'];
  const files = Array.isArray(value) ? value.filter((entry): entry is string => typeof entry === 'string') : [];
  const passphrases: VolumePassphrase[] = [];
  try {
    for (const file of files) passphrases.push({ passphrase: readPassphraseFile(file, io) });
    return await work(passphrases);
  } finally {
    for (const entry of passphrases) entry.passphrase.fill(0);
  }
}

export const NEW_PASSPHRASE_OPTIONS = {
  'new-passphrase-file': { type: 'string' },
} as const;

/** What opening an encrypted source takes: its passphrase, and whether to go on past the legacy AES plausibility check. */
export interface Unlock {
  passphrase?: Uint8Array;
  trustLegacyPassphrase: boolean;
}

/** More than any passphrase (QEMU takes secrets of any length; LUKS tools cap them at 8 MiB): a file past it is not one. */
const MAX_PASSPHRASE_FILE_BYTES = 64 * 1024;

/**
 * A passphrase file's bytes, at most MAX_PASSPHRASE_FILE_BYTES (it may be a pipe or /dev/stdin,
 * so read in pieces rather than by its size; /dev/zero would never end).
 */
function readBoundedFile(filePath: string, io: Pick<CliIo, 'err'>): Uint8Array {
  let fd: number;
  try {
    fd = fs.openSync(filePath, 'r');
  } catch (error) {
    throw toQcow2Error(error, filePath);
  }
  const buffer = new Uint8Array(MAX_PASSPHRASE_FILE_BYTES + 1);
  let length = 0;
  try {
    const stats = fs.fstatSync(fd);
    if (stats.isDirectory()) throw new Qcow2Error('INVALID_ARGUMENT', `${filePath} is a folder, not a passphrase file`);
    warnIfReadableByOthers(filePath, stats, io);
    for (let count = -1; count !== 0 && length < buffer.length; length += count) count = fs.readSync(fd, buffer, length, buffer.length - length, null);
  } catch (error) {
    buffer.fill(0);
    throw error instanceof Qcow2Error ? error : toQcow2Error(error, filePath);
  } finally {
    closeQuietly(fd);
  }
  if (length > MAX_PASSPHRASE_FILE_BYTES) {
    buffer.fill(0);
    throw new Qcow2Error('INVALID_ARGUMENT', `${filePath} holds more than ${MAX_PASSPHRASE_FILE_BYTES / 1024} KiB: that is not a passphrase file`);
  }
  const bytes = buffer.slice(0, length);
  buffer.fill(0);
  return bytes;
}

/**
 * As ssh does for a private key, a word on a passphrase file that other users may read (the
 * passphrase is then theirs too). Only a warning: qemu reads such files, and a pipe or
 * /dev/stdin has no such bits to judge.
 */
function warnIfReadableByOthers(filePath: string, stats: fs.Stats, io: Pick<CliIo, 'err'>): void {
  const readableByOthers = 0o044;
  if (!stats.isFile() || (stats.mode & readableByOthers) === 0) return;
  // The group bits are an access list's mask where the file has one: named users may be behind them.
  const who = (stats.mode & 0o004) !== 0 ? 'every user of this machine' : 'other users (its group, or those an access list names)';
  io.err(`cowbell: warning: ${filePath} can be read by ${who}: \`chmod 600\` it (or type the passphrase at the prompt)\n`);
}

/** A passphrase file: its whole content, less one trailing newline (`\n` or `\r\n`), as an editor or `echo` leaves it. */
export function readPassphraseFile(filePath: string, io: Pick<CliIo, 'err'>): Uint8Array {
  const bytes = readBoundedFile(filePath, io);
  const passphrase = trimNewline(bytes);
  bytes.fill(0);
  return passphrase;
}

/** A copy of `bytes` less one trailing `\n` or `\r\n`. */
function trimNewline(bytes: Uint8Array): Uint8Array {
  let end = bytes.length;
  if (bytes[end - 1] === 0x0a) end -= bytes[end - 2] === 0x0d ? 2 : 1;
  return bytes.slice(0, end);
}

/**
 * A disk's current passphrase from a file: without its trailing newline, then — when it has one —
 * the whole file (qemu's `--object secret,file=` keeps the newline, so a disk made that way needs it).
 */
export function readCurrentPassphraseFile(filePath: string, io: Pick<CliIo, 'err'>): Uint8Array[] {
  // Read once (the file may be a pipe): the trimmed passphrase is cut from the whole.
  const whole = readBoundedFile(filePath, io);
  const stripped = trimNewline(whole);
  if (whole.length === stripped.length) {
    whole.fill(0);
    return [stripped];
  }
  return [stripped, whole];
}

/**
 * Runs `work` with each candidate passphrase in turn until one is not refused as the wrong one
 * (BAD_PASSPHRASE); the last candidate's refusal is the answer. Zeroes every candidate at the end.
 */
export async function withFirstPassphrase<T>(candidates: Uint8Array[], work: (passphrase: Uint8Array) => Promise<T>): Promise<T> {
  try {
    for (let index = 0; ; index++) {
      const candidate = candidates[index];
      if (candidate === undefined) throw new Qcow2Error('INTERNAL', 'no passphrase to try');
      try {
        return await work(candidate);
      } catch (error) {
        if (!(error instanceof Qcow2Error && error.code === 'BAD_PASSPHRASE') || index === candidates.length - 1) throw error;
      }
    }
  } finally {
    for (const candidate of candidates) candidate.fill(0);
  }
}

/** How an image is encrypted, from its header: 'luks', 'aes' (legacy), or null (plain, or not qcow2). */
export function encryptionOf(imagePath: string): 'luks' | 'aes' | null {
  if (detectFormat(imagePath) !== 'qcow2') return null;
  return qcow2EncryptionOf(imagePath);
}

/** As encryptionOf, for commands only a qcow2 image has: anything else is refused as not one (BAD_MAGIC, TRUNCATED). */
export function qcow2EncryptionOf(imagePath: string): 'luks' | 'aes' | null {
  // Only the header matters here: a disk damaged past it (one to rescue) still says whether it is encrypted.
  const image = Qcow2Image.open(imagePath, { readOnly: true, openBacking: false, forCheck: true });
  try {
    const method = image.header.cryptMethod;
    return method === 2 ? 'luks' : method === 1 ? 'aes' : null;
  } finally {
    image.close();
  }
}

/**
 * The passphrase of an encrypted disk, as candidates to try in turn (withFirstPassphrase):
 * --passphrase-file's (readCurrentPassphraseFile), else the one typed at the terminal, else a usage error.
 */
export async function currentPassphrases(args: ParsedArgs, io: CliIo, imagePath: string, backingEncrypted = false): Promise<Uint8Array[]> {
  const file = option(args, 'passphrase-file');
  if (file !== undefined) return readCurrentPassphraseFile(file, io);
  if (io.readSecret === undefined) {
    throw new UsageError(`${backingEncrypted ? `${imagePath}'s backing file` : imagePath} is encrypted: give its passphrase with --passphrase-file FILE (there is no terminal to ask on, and a passphrase is never taken from the command line)`);
  }
  return [await io.readSecret(`Passphrase for ${backingEncrypted ? `the backing file of ${path.basename(imagePath)}` : path.basename(imagePath)}: `)];
}

/**
 * A new passphrase: `fileOption`'s file, else typed twice on the terminal (both must match), else a
 * usage error. An empty one is refused: it would protect nothing.
 */
export async function newPassphrase(args: ParsedArgs, io: CliIo, imagePath: string, fileOption = 'new-passphrase-file'): Promise<Uint8Array> {
  const file = option(args, fileOption);
  let passphrase: Uint8Array;
  if (file !== undefined) passphrase = readPassphraseFile(file, io);
  else {
    if (io.readSecret === undefined) {
      throw new UsageError(`give the new passphrase for ${imagePath} with --${fileOption} FILE (there is no terminal to ask on, and a passphrase is never taken from the command line)`);
    }
    passphrase = await io.readSecret(`New passphrase for ${path.basename(imagePath)}: `);
    const again = await io.readSecret('Type the new passphrase again: ');
    const same = again.length === passphrase.length && again.every((byte, index) => byte === passphrase[index]);
    again.fill(0);
    if (!same) {
      passphrase.fill(0);
      throw new UsageError('the two new passphrases differ; nothing was changed');
    }
  }
  if (passphrase.length === 0) throw new UsageError('the new passphrase is empty; an empty passphrase protects nothing');
  return passphrase;
}

/**
 * Runs `work` on an image that may be encrypted: with the passphrase file's passphrase if given;
 * otherwise first without one, and only if the engine answers LOCKED (the work needs the data)
 * again with the passphrase typed at the prompt. `--force` goes on past the legacy AES check.
 */
export async function withUnlock<T>(args: ParsedArgs, io: CliIo, imagePath: string, work: (unlock: Unlock) => Promise<T>): Promise<T> {
  const trustLegacyPassphrase = flag(args, 'force');
  try {
    if (option(args, 'passphrase-file') === undefined) {
      try {
        return await work({ trustLegacyPassphrase });
      } catch (error) {
        if (!(error instanceof Qcow2Error && error.code === 'LOCKED')) throw error;
      }
    }
    return await withFirstPassphrase(await currentPassphrases(args, io, imagePath, isPlain(imagePath)), (passphrase) => work({ passphrase, trustLegacyPassphrase }));
  } catch (error) {
    throw explainBadPassphrase(error, imagePath);
  }
}

/** A plain image (its backing chain is what is encrypted), as far as its header says. */
function isPlain(imagePath: string): boolean {
  try {
    return encryptionOf(imagePath) === null;
  } catch {
    return false;
  }
}

/** A legacy AES disk's BAD_PASSPHRASE is a judgement, not a proof: say how to go on if the passphrase is right. */
export function explainBadPassphrase(error: unknown, imagePath: string): unknown {
  if (!(error instanceof Qcow2Error) || error.code !== 'BAD_PASSPHRASE') return error;
  let legacy = false;
  try {
    legacy = encryptionOf(imagePath) === 'aes';
  } catch {
    // The error at hand is the one to report.
  }
  return legacy ? new Qcow2Error('BAD_PASSPHRASE', `${error.message}; if it is right, pass --force to go on`, { cause: error }) : error;
}
