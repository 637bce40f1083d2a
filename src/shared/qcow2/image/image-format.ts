/** Which format a file holds, and opening any supported one as a source of guest bytes. */
import type { BlockFile } from '../io/block-file.ts';
import { NodeBlockFile } from '../io/block-file.ts';
import { namingFile, Qcow2Error } from '../errors.ts';
import type { ImageFormat } from './image-format-name.ts';
import { QCOW2_MAGIC } from '../format/limits.ts';
import type { GuestReader } from './guest-reader.ts';
import { refuseIfWrittenElsewhere } from '../io/image-lock.ts';
import { Qcow2Image, type OpenImageOptions } from './image.ts';
import { RawImage } from './raw-image.ts';

export { isImageFormat, type ImageFormat } from './image-format-name.ts';

/** qcow2 when the file starts with qcow2's magic, raw otherwise (as QEMU probes). */
export function probeFormat(file: BlockFile): ImageFormat {
  const magic = new Uint8Array(4);
  if (file.read(magic, 0) < 4) return 'raw';
  return new DataView(magic.buffer).getUint32(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
}

export function detectFormat(filePath: string): ImageFormat {
  const file = NodeBlockFile.open(filePath, { readOnly: true });
  try {
    return probeFormat(file);
  } finally {
    file.close();
  }
}

/** How openGuestReader opens a qcow2 image: an encrypted one (and its encrypted backing files) with its passphrase. */
export type GuestReaderOptions = Pick<OpenImageOptions, 'refuseInUse' | 'passphrase' | 'trustLegacyPassphrase' | 'job' | 'forCheck'> & {
  /**
   * Keep writers out of the file while it is open (QEMU's locks, image-lock.ts lockForGuarding):
   * IN_USE if a program writes it now, and none can start to — a copy of the current state must
   * not mix bytes from before and after a VM's writes.
   */
  guard?: boolean;
};

/** Opens an image read-only as guest bytes: a qcow2 image with its backing chain, or a raw file. */
export function openGuestReader(filePath: string, format?: ImageFormat, options: GuestReaderOptions = {}): GuestReader {
  const { guard, ...imageOptions } = options;
  const file = NodeBlockFile.open(filePath, guard === true ? { guard: true } : { readOnly: true });
  try {
    const actual = format ?? probeFormat(file);
    if (actual === 'raw') {
      refuseIfWrittenElsewhere(file, options.refuseInUse);
      return new RawImage(file);
    }
    return Qcow2Image.openFile(file, { ...imageOptions, readOnly: true });
  } catch (error) {
    file.close();
    if (error instanceof Qcow2Error && error.code === 'BAD_MAGIC' && format === 'qcow2') {
      throw new Qcow2Error('BAD_MAGIC', `${filePath} is not a qcow2 image`, { cause: error });
    }
    throw namingFile(error, filePath);
  }
}
