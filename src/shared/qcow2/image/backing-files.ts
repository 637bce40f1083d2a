/**
 * Whether a file is one an image reads through: its external data file, or any file down its
 * backing chain. Replacing one of them with a copy of the image would take from the copy the data
 * it reads there (and from every other image over it): qemu-img refuses by its locks; the engine
 * asks before writing. Headers only; a file that cannot be read ends the walk.
 */
import { backingFormat } from '../format/header.ts';
import { MAX_BACKING_CHAIN } from '../format/limits.ts';
import { NodeBlockFile } from '../io/block-file.ts';
import { sameFile } from '../io/file-identity.ts';
import { Qcow2Image, resolveBackingPath } from './image.ts';
import { probeFormat } from './image-format.ts';

export function readsThrough(image: Qcow2Image, candidate: string): boolean {
  if (image.dataFile !== null && sameFile(image.dataFile.path, candidate)) return true;
  let next = image.backingPath === null ? null : { path: image.backingPath, format: backingFormat(image.header) };
  for (let depth = 0; next !== null && depth < MAX_BACKING_CHAIN; depth++) {
    if (sameFile(next.path, candidate)) return true;
    next = backingOf(next.path, next.format);
  }
  return false;
}

function backingOf(filePath: string, declaredFormat: string | null): { path: string; format: string | null } | null {
  let file: NodeBlockFile;
  try {
    file = NodeBlockFile.open(filePath, { readOnly: true });
  } catch {
    return null;
  }
  try {
    if (declaredFormat === 'raw' || (declaredFormat !== 'qcow2' && probeFormat(file) === 'raw')) return null;
    const image = Qcow2Image.openFile(file, { readOnly: true, openBacking: false, openDataFile: false });
    try {
      const name = image.header.backingFile;
      return name === null ? null : { path: resolveBackingPath(filePath, name), format: backingFormat(image.header) };
    } finally {
      image.close();
    }
  } catch {
    return null;
  } finally {
    file.close();
  }
}
