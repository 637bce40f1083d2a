/** A file's contents in memory: bytes with a logical length that writes past the end extend. */
export class GrowableBytes {
  private buffer: Uint8Array;
  length: number;

  constructor(initial: Uint8Array) {
    this.buffer = new Uint8Array(Math.max(4096, initial.length));
    this.buffer.set(initial);
    this.length = initial.length;
  }

  read(target: Uint8Array, position: number): number {
    if (position >= this.length) return 0;
    const count = Math.min(target.length, this.length - position);
    target.set(this.buffer.subarray(position, position + count));
    return count;
  }

  write(bytes: Uint8Array, position: number): void {
    this.reserve(position + bytes.length);
    if (position > this.length) this.buffer.fill(0, this.length, position);
    this.buffer.set(bytes, position);
    this.length = Math.max(this.length, position + bytes.length);
  }

  truncate(size: number): void {
    this.reserve(size);
    if (size > this.length) this.buffer.fill(0, this.length, size);
    this.length = size;
  }

  contents(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }

  private reserve(size: number): void {
    if (size <= this.buffer.length) return;
    // Grow by a quarter (not double): crash tests hold 100 MiB images in memory.
    const grown = new Uint8Array(Math.max(size, Math.floor(this.buffer.length * 1.25) + 65536));
    grown.set(this.buffer.subarray(0, this.length));
    this.buffer = grown;
  }
}
