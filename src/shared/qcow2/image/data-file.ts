/**
 * An image's external data file (qcow2 incompatible bit 2; its name in header extension
 * 0x44415441): the file that holds the guest clusters, each at host offset = guest offset and
 * without refcounts, while every table stays in the qcow2 file. Opened and locked as the image is,
 * so a VM holding either keeps Cowbell from writing (QEMU 7.2 locks both, checked via /proc/locks).
 */
import * as path from 'node:path';
import { Qcow2Error } from '../errors.ts';
import { dataFileName, type Header } from '../format/header.ts';
import { AUTOCLEAR_DATA_FILE_RAW, INCOMPAT_DATA_FILE } from '../format/limits.ts';
import type { BlockFile } from '../io/block-file.ts';

export function hasExternalData(header: Header): boolean {
  return (header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
}

/** The autoclear bit promising that the data file alone reads as the guest disk (a raw image). */
export function dataFileIsRaw(header: Header): boolean {
  return hasExternalData(header) && (header.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW) !== 0n;
}

/**
 * Where the data file is, as QEMU 7.2 finds it: the stored name opened as it is, so a relative
 * name is relative to the working directory of the program opening the image — not to the image's
 * folder as a backing file name is (checked: `qemu-io` started in another folder fails with
 * "Could not open 'x.raw'", and reads another folder's x.raw when there is one).
 */
export function resolveDataFilePath(name: string): string {
  return path.resolve(name);
}

/** The data file's path for an image whose header uses one, or null when it keeps its data itself. */
export function dataFilePathOf(header: Header): string | null {
  if (!hasExternalData(header)) return null;
  const name = dataFileName(header);
  // QEMU: "'data-file' is required for this image" (the name can only be given on its command line then).
  if (name === null || name.length === 0) {
    throw new Qcow2Error('DATA_FILE_NOT_FOUND', 'The image keeps its data in an external data file but does not name it');
  }
  return resolveDataFilePath(name);
}

/** Opens the data file with the image's access (and so its locks); DATA_FILE_NOT_FOUND naming the path when it is not there. */
export function openDataFile(header: Header, dataPath: string, readOnly: boolean, openFile: (filePath: string, readOnly: boolean) => BlockFile): BlockFile {
  try {
    return openFile(dataPath, readOnly);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') {
      const name = dataFileName(header) ?? dataPath;
      const relative = path.isAbsolute(name) ? '' : ` (the image names "${name}", which QEMU too looks for from the folder it is started in)`;
      throw new Qcow2Error('DATA_FILE_NOT_FOUND', `The image's data file ${dataPath} does not exist${relative}`, { cause: error });
    }
    throw error;
  }
}

/**
 * What QEMU refuses on an image with an external data file, refused alike before anything is
 * written: internal snapshots (its tables could not share clusters the data file holds once) and
 * compressed clusters (`qemu-img snapshot -c` and `qemu-io write -c` fail with "Operation not supported").
 */
export function refuseWithExternalData(header: Header, what: string): void {
  if (hasExternalData(header)) {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `This image keeps its data in an external data file, which cannot have ${what} (QEMU refuses them too)`);
  }
}
