/** A BlockFile over bytes in memory: hostile-image tests mutate and open thousands of images without touching the disk. */
import type { BlockFile } from '../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';

export class MemoryBlockFile implements BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  private bytes: Uint8Array;
  private length: number;

  constructor(path: string, bytes: Uint8Array, readOnly = false) {
    this.path = path;
    this.bytes = bytes.slice();
    this.length = bytes.length;
    this.readOnly = readOnly;
  }

  read(buffer: Uint8Array, position: number): number {
    if (position >= this.length) return 0;
    const count = Math.min(buffer.length, this.length - position);
    buffer.set(this.bytes.subarray(position, position + count));
    return count;
  }

  write(buffer: Uint8Array, position: number): void {
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
    this.ensureCapacity(position + buffer.length);
    this.bytes.set(buffer, position);
    this.length = Math.max(this.length, position + buffer.length);
  }

  flush(): void {}

  size(): number {
    return this.length;
  }

  truncate(size: number): void {
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
    this.ensureCapacity(size);
    this.bytes.fill(0, Math.min(size, this.length), this.bytes.length);
    this.length = size;
  }

  close(): void {}

  contents(): Uint8Array {
    return this.bytes.slice(0, this.length);
  }

  private ensureCapacity(needed: number): void {
    if (needed <= this.bytes.length) return;
    // Tests only ever grow small images; refuse the absurd rather than exhaust memory.
    if (needed > 1024 * 1024 * 1024) throw new Qcow2Error('NO_SPACE', `${this.path}: a test image would grow past 1 GiB`);
    const grown = new Uint8Array(Math.max(needed, this.bytes.length * 2));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
}
