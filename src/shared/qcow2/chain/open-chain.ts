/**
 * Opening the files of a backing chain one by one, each without its own backing (the caller links
 * them), for the operations that change a chain: commit writes into a lower file while reading the
 * upper ones, which the ordinary open (each image opening its whole chain) cannot do — it would
 * hold every lower file open for reading.
 */
import { Qcow2Error } from '../errors.ts';
import { sameFile } from '../io/file-identity.ts';
import { backingFormat } from '../format/header.ts';
import { MAX_BACKING_CHAIN } from '../format/limits.ts';
import { NodeBlockFile, type BlockFile } from '../io/block-file.ts';
import { Qcow2Image, defaultOpenFile, resolveBackingPath, type OpenImageOptions } from '../image/image.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { probeFormat, type ImageFormat } from '../image/image-format.ts';

export type OpenFile = (filePath: string, readOnly: boolean) => BlockFile;

/**
 * How commit and rebase open the chain's files: the one they change for writing, every file they
 * only read guarded (QEMU's locks keep writers out until the operation ends, as qemu-img's own
 * commit and rebase hold them): a program starting to write a file of the chain midway would
 * change what is being copied or compared.
 */
export const guardedOpenFile: OpenFile = (filePath, readOnly) => NodeBlockFile.open(filePath, readOnly ? { guard: true } : { readOnly: false });

/** A file of the chain below an image: where it is and in which format the image above names it. */
export interface ChainLink {
  path: string;
  name: string;
  format: ImageFormat;
}

/** The backing file `image` names, or null; BACKING_NOT_FOUND when it is missing. */
export function backingLink(image: Qcow2Image, openFile: OpenFile = defaultOpenFile): ChainLink | null {
  const name = image.header.backingFile;
  if (name === null) return null;
  const backingPath = resolveBackingPath(image.file.path, name);
  const declared = backingFormat(image.header);
  if (declared !== null && declared !== 'qcow2' && declared !== 'raw') throw new Qcow2Error('UNSUPPORTED_FEATURE', `Backing file format ${declared} is not supported (qcow2 and raw are)`);
  let format: ImageFormat | null = declared;
  if (format === null) {
    const file = openMissingAware(backingPath, true, openFile);
    try {
      format = probeFormat(file);
    } finally {
      file.close();
    }
  }
  return { path: backingPath, name, format };
}

/** Opens a file of the chain, saying which backing file is missing rather than NOT_FOUND. */
export function openMissingAware(filePath: string, readOnly: boolean, openFile: OpenFile = defaultOpenFile): BlockFile {
  try {
    return openFile(filePath, readOnly);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') throw new Qcow2Error('BACKING_NOT_FOUND', `The backing file ${filePath} does not exist`, { cause: error });
    // "The disk is in use…" would leave the user looking at the overlay they named: say which file.
    if (error instanceof Qcow2Error && error.code === 'IN_USE') throw new Qcow2Error('IN_USE', error.message.replace(/^The disk\b/, `The backing file ${filePath}`), { cause: error });
    throw error;
  }
}

/** Fails with CORRUPT when `next` is already in the chain (a loop) or the chain is too long. */
export function refuseLoop(chain: readonly string[], next: string): void {
  if (chain.some((entry) => sameFile(entry, next))) throw new Qcow2Error('CORRUPT', `The backing chain loops back to ${next}`);
  if (chain.length + 1 > MAX_BACKING_CHAIN) throw new Qcow2Error('CORRUPT', `The backing chain is longer than ${MAX_BACKING_CHAIN} images`);
}

/**
 * How commit and rebase unlock the encrypted files they read or write: one passphrase for all of
 * them, as every other operation reads a disk and the encrypted files below it. A file it does not
 * open is BAD_PASSPHRASE at open, named, before anything is written.
 */
export type ChainUnlock = Pick<OpenImageOptions, 'passphrase' | 'trustLegacyPassphrase'>;

/**
 * An encrypted file commit or rebase reads or writes, opened without a passphrase, is refused with
 * LOCKED before anything is written (the CLI and the app then ask for the passphrase): the copy
 * would otherwise first reach its data midway, after writing what it had copied so far.
 */
export function refuseLocked(image: Qcow2Image): void {
  if (image.header.cryptMethod !== 0 && image.cipher === null) {
    throw new Qcow2Error('LOCKED', `${image.file.path} is encrypted: commit and rebase read and write its data, so they need its passphrase (one passphrase opens every encrypted file of the chain)`);
  }
}

/** refuseLocked for `reader` and every file below it (the chains a commit's base completes clusters from, those a rebase compares). */
export function refuseLockedChain(reader: GuestReader | null): void {
  for (let below = reader; below instanceof Qcow2Image; below = below.backing) refuseLocked(below);
}

/**
 * The file commit or rebase writes guest data into: in the old qcow2 AES encryption (crypt_method
 * 1) it is refused, as Cowbell never writes that encryption (QEMU no longer boots it).
 */
export function refuseLegacyAesTarget(image: Qcow2Image): void {
  if (image.header.cryptMethod === 1) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `${image.file.path} uses the old qcow2 AES encryption, which Cowbell does not write: move it to LUKS first (cowbell encrypt), or decrypt it`);
  }
}
