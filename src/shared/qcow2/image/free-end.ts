/**
 * Giving back the free clusters at the end of an image's file, as qemu-img does after a shrink or
 * after emptying an overlay. Only clusters whose refcount is 0 go, so nothing that names them can
 * remain: the caller has flushed first (the drops durable), and the cut is flushed itself.
 */
import type { Qcow2Image } from './image.ts';

export function truncateFreeEnd(image: Qcow2Image): void {
  const fileBytes = image.file.size();
  let last = Math.ceil(fileBytes / image.clusterBytes) - 1;
  while (last > 0 && image.refcounts.get(last) === 0) last--;
  const end = (last + 1) * image.clusterBytes;
  if (end >= fileBytes) return;
  image.file.truncate(end);
  image.file.flush();
}
