/**
 * Giving back the free clusters at the end of an image's file, as qemu-img does after a shrink or
 * after emptying an overlay. Only clusters whose refcount is 0 go, so nothing that names them can
 * remain: the caller has flushed first (the drops durable), and the cut is flushed itself.
 */
import { Qcow2Error } from '../errors.ts';
import type { Qcow2Image } from './image.ts';

/**
 * Whether the file was cut. The work before it is done and durable, so a cut that fails (an I/O
 * error) is not the caller's failure: the file only keeps free clusters at its end, as it would
 * after a crash before the cut.
 */
export function truncateFreeEnd(image: Qcow2Image): boolean {
  const fileBytes = image.file.size();
  let last = Math.ceil(fileBytes / image.clusterBytes) - 1;
  while (last > 0 && image.refcounts.get(last) === 0) last--;
  const end = (last + 1) * image.clusterBytes;
  if (end >= fileBytes) return false;
  try {
    image.file.truncate(end);
    image.file.flush();
  } catch (error) {
    if (error instanceof Qcow2Error) return false;
    throw error;
  }
  return true;
}
