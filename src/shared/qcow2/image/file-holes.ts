/**
 * The holes of a disk's own file as they are now (SEEK_DATA/SEEK_HOLE): data clusters mapped there
 * were never written (a disk made with preallocation=metadata maps its whole size so). They read
 * zeros and take no space on disk.
 */
import { descriptorOf } from '../io/fail-stop-file.ts';
import { holesOf, type HoleList } from '../io/hole-aware-file.ts';
import type { Qcow2Image } from './image.ts';

/**
 * The file's holes, or null where it has none or they cannot be known: no descriptor, guest data
 * in an external data file (not in this one), or changes of this image not yet in the file.
 */
export function imageFileHoles(image: Qcow2Image): HoleList | null {
  if (image.externalData || image.hasUnflushedChanges()) return null;
  const descriptor = descriptorOf(image.file);
  return descriptor === null ? null : holesOf(descriptor, image.file.size());
}
