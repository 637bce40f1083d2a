/**
 * A full disk or a failing one, on demand: `FailingFile` wraps any BlockFile (a FaultFile, to keep
 * the log) and makes its n-th change or flush throw the error node:fs throws — an Error with a
 * `code` (ENOSPC, EIO) — as a real file system would. A write that runs out of space may first
 * write part of its bytes, as a short write does.
 */
import type { BlockFile } from '../../src/shared/qcow2/io/block-file.ts';

export type FailureCode = 'ENOSPC' | 'EIO';

export interface FailurePlan {
  /** Which call fails, counting every write, truncate and flush from 0 (the FaultFile log's index). */
  event: number;
  code: FailureCode;
  /** For a write that extends the file: bytes of it that reach the file before the error (rounded to 512). */
  partialBytes?: number;
}

const ERRNO: Record<FailureCode, number> = { ENOSPC: -28, EIO: -5 };

/** What node:fs throws: `ENOSPC: no space left on device, write` with code, errno and syscall. */
export function nodeStyleError(code: FailureCode, syscall: string): Error {
  const text = code === 'ENOSPC' ? 'no space left on device' : 'i/o error';
  return Object.assign(new Error(`${code}: ${text}, ${syscall}`), { code, errno: ERRNO[code], syscall });
}

export class FailingFile implements BlockFile {
  private readonly inner: BlockFile;
  private readonly plan: FailurePlan;
  private events = 0;
  /** The error thrown, once it has been. */
  thrown: Error | null = null;
  /** Writes, truncates and flushes asked for after the failure (a fail-stop engine asks for none). */
  callsAfterFailure = 0;

  constructor(inner: BlockFile, plan: FailurePlan) {
    this.inner = inner;
    this.plan = plan;
  }

  get path(): string {
    return this.inner.path;
  }

  get readOnly(): boolean {
    return this.inner.readOnly;
  }

  read(buffer: Uint8Array, position: number): number {
    return this.inner.read(buffer, position);
  }

  size(): number {
    return this.inner.size();
  }

  close(): void {
    this.inner.close();
  }

  write(buffer: Uint8Array, position: number): void {
    if (this.failsNow()) {
      const partial = Math.min(buffer.length, Math.floor((this.plan.partialBytes ?? 0) / 512) * 512);
      if (partial > 0) this.inner.write(buffer.subarray(0, partial), position);
      throw this.fail('write');
    }
    this.inner.write(buffer, position);
  }

  truncate(size: number): void {
    if (this.failsNow()) throw this.fail('ftruncate');
    this.inner.truncate(size);
  }

  flush(): void {
    if (this.failsNow()) throw this.fail('fdatasync');
    this.inner.flush();
  }

  /** True for the planned call; calls after the failure go through (the space may be back) and are counted. */
  private failsNow(): boolean {
    if (this.thrown !== null) {
      this.callsAfterFailure++;
      return false;
    }
    return this.events++ === this.plan.event;
  }

  private fail(syscall: string): Error {
    this.thrown = nodeStyleError(this.plan.code, syscall);
    return this.thrown;
  }
}
