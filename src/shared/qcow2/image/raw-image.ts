import { hasDescriptor, type BlockFile } from '../io/block-file.ts';
import { fileExtents, nextDataOffset, type FileExtent } from '../io/file-extents.ts';
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

  /**
   * Which parts of [start, end) the file stores and which are holes (read as zeros), as far as the
   * file system tells (file-extents.ts); past the end of the file is a hole. All data where it cannot tell.
   */
  extents(start: number, end: number): FileExtent[] {
    const fileEnd = Math.max(start, Math.min(end, this.virtualSize));
    const descriptor = this.descriptor();
    const extents = fileEnd === start ? [] : descriptor === null ? [{ start, length: fileEnd - start, data: true }] : fileExtents(descriptor, start, fileEnd);
    if (end > fileEnd) {
      const last = extents.at(-1);
      if (last !== undefined && !last.data) last.length += end - fileEnd;
      else extents.push({ start: fileEnd, length: end - fileEnd, data: false });
    }
    return extents;
  }

  /** The first offset at or after `from` that may hold data, or `end`. */
  nextData(from: number, end: number): number {
    if (from >= Math.min(end, this.virtualSize)) return end;
    const descriptor = this.descriptor();
    const next = descriptor === null ? from : nextDataOffset(descriptor, from, Math.min(end, this.virtualSize));
    return next >= this.virtualSize ? end : next;
  }

  write(buffer: Uint8Array, guestOffset: number): void {
    this.file.write(buffer, guestOffset);
  }

  close(): void {
    this.file.close();
  }

  private descriptor(): number | null {
    return hasDescriptor(this.file) ? this.file.descriptor : null;
  }
}
