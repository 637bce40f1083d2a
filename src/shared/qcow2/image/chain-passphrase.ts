/**
 * Cowbell opens a disk and the encrypted files below it with one passphrase (the app and the CLI
 * ask for one). A disk given a passphrase of its own that does not open them too is a chain Cowbell
 * cannot read any more (qemu-img can, with a secret per file): `cowbell encrypt` of an overlay over
 * an encrypted backing file, and a passphrase change of such an overlay, refuse such a passphrase
 * before anything is written.
 */
import type { Passphrase } from '../crypto/luks-keys.ts';
import { Qcow2Error } from '../errors.ts';
import { backingFormat } from '../format/header.ts';
import { MAX_BACKING_CHAIN } from '../format/limits.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { Qcow2Image } from './image.ts';

/**
 * Refuses `newPassphrase` for `image` where an encrypted qcow2 file down its backing chain does not
 * open with it (a LUKS key slot, or the old AES encryption's plausibility check). A file that cannot
 * be read ends the walk: reading the chain says what is wrong with it.
 */
export function refusePassphraseTheChainLacks(image: Qcow2Image, newPassphrase: Passphrase, job: JobContext = silentJob): void {
  let next = image.backingPath === null ? null : { path: image.backingPath, format: backingFormat(image.header) };
  for (let depth = 0; next !== null && next.format !== 'raw' && depth < MAX_BACKING_CHAIN; depth++) {
    const below = openHeaders(next.path);
    if (below === null) return;
    try {
      if (below.header.cryptMethod !== 0 && !opensWith(next.path, newPassphrase, job)) {
        throw new Qcow2Error(
          'INVALID_ARGUMENT',
          `The backing file ${next.path} is encrypted with another passphrase, and Cowbell reads a disk and the encrypted files below it with one: give this disk the backing file's passphrase (or first add this one to the backing file: cowbell passphrase --add). Nothing was changed`,
        );
      }
      next = below.backingPath === null ? null : { path: below.backingPath, format: backingFormat(below.header) };
    } finally {
      below.close();
    }
  }
}

/** refusePassphraseTheChainLacks for the disk at `imagePath` (a passphrase change in place: key-slot-change.ts). */
export function refusePassphraseTheChainLacksAt(imagePath: string, newPassphrase: Passphrase, job: JobContext = silentJob): void {
  const image = Qcow2Image.open(imagePath, { readOnly: true, openBacking: false, openDataFile: false });
  try {
    refusePassphraseTheChainLacks(image, newPassphrase, job);
  } finally {
    image.close();
  }
}

function openHeaders(filePath: string): Qcow2Image | null {
  try {
    return Qcow2Image.open(filePath, { readOnly: true, openBacking: false, openDataFile: false });
  } catch {
    return null;
  }
}

function opensWith(filePath: string, passphrase: Passphrase, job: JobContext): boolean {
  try {
    Qcow2Image.open(filePath, { readOnly: true, openBacking: false, openDataFile: false, passphrase, job }).close();
    return true;
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'BAD_PASSPHRASE') return false;
    throw error;
  }
}
