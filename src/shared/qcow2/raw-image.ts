import type { BlockFile } from './block-file.ts';
import type { GuestReader } from './guest-reader.ts';

/** A raw disk image: guest offset = file offset; past the end of the file reads as zeros. */
export class RawImage implements GuestReader {
  readonly file: BlockFile;
  readonly virtualSize: number;

  constructor(file: BlockFile) {
    this.file = file;
    this.virtualSize = file.size();
  }

  readInto(buffer: Uint8Array, guestOffset: number): void {
    const count = guestOffset < this.virtualSize ? this.file.read(buffer, guestOffset) : 0;
    if (count < buffer.length) buffer.fill(0, count);
  }

  write(buffer: Uint8Array, guestOffset: number): void {
    this.file.write(buffer, guestOffset);
  }

  close(): void {
    this.file.close();
  }
}
