/**
 * `IMG[@SNAPSHOT]`, as `ls` and `copy-out` take a state: the image and the state in one argument.
 * A file name may itself contain '@': an existing file named exactly as given is the image (its
 * current state); otherwise the text after an '@' names the snapshot where the part before it is
 * an existing file (the longest such part: a snapshot's name may hold an '@' itself). `-l
 * SNAPSHOT` says the same without the ambiguity. Then the state's files, opened as the command's
 * options say.
 */
import * as fs from 'node:fs';
import { CURRENT_STATE, openStateFiles, type StateFiles } from '../shared/qcow2/files/state-files.ts';
import { Qcow2Image } from '../shared/qcow2/image/image.ts';
import { flag } from './args.ts';
import { UsageError, type CliIo, type ParsedArgs } from './command.ts';
import type { VolumePassphrase } from '../shared/qcow2/files/encrypted-volumes.ts';
import { withUnlock, withVolumePassphrases, type Unlock } from './passphrase-input.ts';
import { snapshotRefOf } from './snapshot-ref.ts';
import { printableMessage } from './printable.ts';

export interface ImageState {
  image: string;
  /** "current" or a snapshot's name or id. */
  state: string;
}

export function parseImageState(argument: string, snapshotOption: string | undefined): ImageState {
  if (snapshotOption !== undefined) {
    if (snapshotOption === '') throw new UsageError('-l needs a snapshot name or id');
    return { image: argument, state: typedState(argument, snapshotOption) };
  }
  if (isFile(argument)) return { image: argument, state: CURRENT_STATE };
  // The longest existing file before an '@': a snapshot's own name may hold an '@' too (IMG@x@y).
  for (let at = argument.lastIndexOf('@'); at > 0; at = argument.lastIndexOf('@', at - 1)) {
    if (!isFile(argument.slice(0, at))) continue;
    const state = argument.slice(at + 1);
    if (state === '') throw new UsageError(`${argument}: give a snapshot name or id after '@'`);
    return { image: argument.slice(0, at), state: typedState(argument.slice(0, at), state) };
  }
  // Not there: opening it says so, with the name as given.
  return { image: argument, state: CURRENT_STATE };
}

/**
 * A state typed after -l or '@' names a snapshot: "current" is the snapshot of that name where there
 * is one (as convert -l reads it), and the current state only where there is none.
 */
function typedState(image: string, state: string): string {
  return state === CURRENT_STATE && hasSnapshotNamed(image, state) ? `snapshot.name=${state}` : state;
}

function hasSnapshotNamed(image: string, name: string): boolean {
  let opened: Qcow2Image;
  try {
    opened = Qcow2Image.open(image, { readOnly: true, openBacking: false, openDataFile: false });
  } catch {
    // Not a qcow2 image, or not readable: opening it for the command says so.
    return false;
  }
  try {
    return opened.snapshots.some((entry) => entry.name === name);
  } finally {
    opened.close();
  }
}

function isFile(candidate: string): boolean {
  try {
    return fs.statSync(candidate).isFile();
  } catch {
    return false;
  }
}

/**
 * Opens a state of `image` with the passphrase `unlock` holds, and encrypted volumes inside it with
 * `volumePassphrases`; -U (--force-share) reads an image a running VM holds. A volume that reads
 * but with a caution (GuestVolumeInfo.caution) says so on stderr, and so does an encrypted volume
 * that stays locked (how to open it, or why the passphrase given did not).
 */
export function stateFilesOpener(args: ParsedArgs, io: CliIo, image: string, unlock: Unlock, { guardCurrent = false, volumePassphrases = [] }: { guardCurrent?: boolean; volumePassphrases?: readonly VolumePassphrase[] } = {}): (state: string) => Promise<StateFiles> {
  const refuseInUse = !flag(args, 'force-share');
  return async (state) => {
    const ref = snapshotRefOf(state);
    // A copy of the current state keeps writers out until it is done (unless -U): a VM starting meanwhile would tear it.
    const guard = guardCurrent && refuseInUse && ref === CURRENT_STATE;
    const files = await openStateFiles(image, ref, { refuseInUse, passphrase: unlock.passphrase, trustLegacyPassphrase: unlock.trustLegacyPassphrase, guard, volumes: { passphrases: volumePassphrases } });
    for (const volume of files.volumes) {
      const where = volume.name === '' ? '' : `volume /${volume.name} `;
      if (volume.caution !== undefined) io.err(`cowbell: caution: ${where}(${state}): ${printableMessage(volume.caution)}\n`);
      const encryption = volume.encryption;
      if (encryption !== undefined && !encryption.unlocked) {
        const why = encryption.problem === undefined ? 'give its passphrase with --volume-passphrase-file FILE to read its files' : `not opened: ${printableMessage(encryption.problem)}`;
        io.err(`cowbell: note: ${where}(${state}) is ${encryption.format.toUpperCase()}-encrypted (UUID ${printableMessage(encryption.uuid)}): ${why}\n`);
      }
    }
    return files;
  };
}

/** Runs `use` on one state's files, opened under withUnlock (the passphrase read or asked for where the image needs one) and with the volume passphrases given, then closes them. */
export function withStateFiles<T>(args: ParsedArgs, io: CliIo, image: string, state: string, use: (files: StateFiles) => Promise<T>, options: { guardCurrent?: boolean } = {}): Promise<T> {
  return withVolumePassphrases(args, io, (volumePassphrases) =>
    withUnlock(args, io, image, async (unlock) => {
      const files = await stateFilesOpener(args, io, image, unlock, { ...options, volumePassphrases })(state);
      try {
        return await use(files);
      } finally {
        await files.close();
      }
    }),
  );
}
