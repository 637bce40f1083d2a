/**
 * A backing file's format, as the command line gave it (-F). Never guessed, as qemu-img 7.2 never
 * guesses it: a raw disk's guest can write what looks like a qcow2 header at its start, naming any
 * host file as ITS backing file; a format guessed from those bytes and recorded in the new image
 * would have QEMU trust them from then on, and the clone's guest read that host file.
 */
import { detectFormat, isImageFormat, type ImageFormat } from '../shared/qcow2/image/image-format.ts';
import { UsageError } from './command.ts';

/** -F's value, or a usage error saying which to give (with what the file looks like, when it can be read). */
export function requiredBackingFormat(command: string, given: string | undefined, backingPath: string): ImageFormat {
  if (given !== undefined) {
    if (!isImageFormat(given)) throw new UsageError(`${command}: backing format must be qcow2 or raw, not ${given}`);
    return given;
  }
  let looksLike = '';
  try {
    looksLike = ` (it looks like ${detectFormat(backingPath)}`;
    looksLike += looksLike.endsWith('qcow2') ? ', but a raw disk\'s guest can write such a header)' : ')';
  } catch {
    // Unreadable or missing: the usage error alone.
  }
  throw new UsageError(`${command}: give the backing file's format with -F qcow2 or -F raw${looksLike}; as qemu-img, Cowbell does not guess it`);
}
