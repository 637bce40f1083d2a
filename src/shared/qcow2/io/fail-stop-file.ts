/**
 * After the first failed write, flush or truncate (a full disk, an I/O error), an open image
 * stops writing. Its metadata is written in an order where any prefix of the writes is safe
 * (what a power cut would leave), but the in-memory tables no longer match the file once a write
 * fails half-way through a step; writing more from them — a retry, or the flush on close — could
 * publish a pointer whose target never reached the disk. Stopping leaves the file as the crash
 * tests prove safe: leaks at worst, the guest data from before or after the operation.
 */
import { hasDescriptor, type BlockFile } from './block-file.ts';
import { Qcow2Error, toQcow2Error } from '../errors.ts';

export class FailStopFile implements BlockFile {
  readonly inner: BlockFile;
  private failedWith: Qcow2Error | null = null;

  private constructor(inner: BlockFile) {
    this.inner = inner;
  }

  /** The file wrapped once: wrapping a FailStopFile again keeps its failure state. */
  static wrap(file: BlockFile): FailStopFile {
    return file instanceof FailStopFile ? file : new FailStopFile(file);
  }

  get path(): string {
    return this.inner.path;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  get inUseElsewhere(): boolean | undefined {
    return this.inner.inUseElsewhere;
  }

  /** The first write failure, as a typed error (NO_SPACE, IO_ERROR, …); null while all is well. */
  get failure(): Qcow2Error | null {
    return this.failedWith;
  }

  /** Refuses to start a change on a file that has stopped writing. */
  throwIfFailed(): void {
    if (this.failedWith !== null) throw stoppedError(this.failedWith);
  }

  read(buffer: Uint8Array, position: number): number {
    try {
      return this.inner.read(buffer, position);
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }

  write(buffer: Uint8Array, position: number): void {
    this.guarded(() => this.inner.write(buffer, position));
  }

  flush(): void {
    this.guarded(() => this.inner.flush());
  }

  truncate(size: number): void {
    this.guarded(() => this.inner.truncate(size));
  }

  size(): number {
    try {
      return this.inner.size();
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
  }

  close(): void {
    this.inner.close();
  }

  private guarded(change: () => void): void {
    this.throwIfFailed();
    try {
      change();
    } catch (error) {
      const typed = toQcow2Error(error, this.path);
      // Refusals that wrote nothing (a read-only file) leave the file as it was: not a failure.
      if (typed.code !== 'READ_ONLY') this.failedWith = typed;
      throw typed;
    }
  }
}

function stoppedError(cause: Qcow2Error): Qcow2Error {
  return new Qcow2Error(cause.code, `${cause.message} (an earlier write to this image failed; nothing more was written: close it and open it again)`, { cause });
}

/** The descriptor of an open file, under the fail-stop wrapper or not; null where there is none (a test's file). */
export function descriptorOf(file: BlockFile): number | null {
  const inner = file instanceof FailStopFile ? file.inner : file;
  return hasDescriptor(inner) ? inner.descriptor : null;
}
