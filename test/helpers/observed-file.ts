/**
 * A BlockFile over a real file that records every read (to prove what an operation looked at)
 * and can skip fdatasync (for tests that make hundreds of snapshots and are not about crashes:
 * the bytes still reach the page cache, where qemu-img reads them).
 */
import { NodeBlockFile, type BlockFile } from '../../src/shared/qcow2/io/block-file.ts';

export interface ObservedRead {
  position: number;
  length: number;
}

export class ObservedFile implements BlockFile {
  readonly reads: ObservedRead[] = [];
  private readonly inner: BlockFile;
  private readonly sync: boolean;
  private readonly record: boolean;

  constructor(inner: BlockFile, options: { sync: boolean; record: boolean }) {
    this.inner = inner;
    this.sync = options.sync;
    this.record = options.record;
  }

  get path(): string {
    return this.inner.path;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  read(buffer: Uint8Array, position: number): number {
    if (this.record) this.reads.push({ position, length: buffer.length });
    return this.inner.read(buffer, position);
  }

  write(buffer: Uint8Array, position: number): void {
    this.inner.write(buffer, position);
  }

  flush(): void {
    if (this.sync) this.inner.flush();
  }

  size(): number {
    return this.inner.size();
  }

  truncate(size: number): void {
    this.inner.truncate(size);
  }

  close(): void {
    this.inner.close();
  }
}

/** An `openFile` for Qcow2Image.open that skips fdatasync. */
export function openUnsynced(filePath: string, readOnly: boolean): BlockFile {
  return new ObservedFile(NodeBlockFile.open(filePath, { readOnly }), { sync: false, record: false });
}
