/** VolumeBytes over a raw image file (a whole-disk filesystem), for filesystem reader tests. */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { VolumeBytes } from '../../src/shared/qcow2/files/filesystem.ts';

export interface RawVolumeBytes extends VolumeBytes {
  close(): void;
}

export function openRawVolume(path: string, start = 0, length?: number): RawVolumeBytes {
  const fd = openSync(path, 'r');
  const volumeLength = length ?? fstatSync(fd).size - start;
  return {
    length: volumeLength,
    async read(buffer: Uint8Array, offset: number): Promise<void> {
      if (!Number.isSafeInteger(offset) || offset < 0 || offset + buffer.length > volumeLength) throw new RangeError(`a read of ${buffer.length} bytes at ${offset}, outside the volume's ${volumeLength} bytes`);
      let done = 0;
      while (done < buffer.length) {
        const count = readSync(fd, buffer, done, buffer.length - done, start + offset + done);
        if (count === 0) {
          buffer.fill(0, done);
          return;
        }
        done += count;
      }
    },
    close: () => closeSync(fd),
  };
}

/** VolumeBytes over bytes in memory (a damaged copy made in a test); a read outside them is a plain RangeError: a finding. */
export function memoryVolumeBytes(bytes: Uint8Array): VolumeBytes {
  return {
    length: bytes.length,
    async read(buffer, offset) {
      if (offset < 0 || offset + buffer.length > bytes.length) throw new RangeError(`a read of ${buffer.length} bytes at ${offset}, outside the volume`);
      buffer.set(bytes.subarray(offset, offset + buffer.length));
    },
  };
}
