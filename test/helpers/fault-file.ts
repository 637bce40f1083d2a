/**
 * Power cuts on demand. `FaultFile` is a BlockFile over memory that records every write, truncate
 * and flush in order; `crashState` rebuilds the file as a power cut after any prefix of that log
 * would leave it: everything up to the last flush is on disk, and of the writes since then any
 * subset may be (a disk's write cache reorders freely between flushes; a flush is a barrier).
 * fault-file-system.ts does the same for whole files, names and folder syncs.
 */
import { createHash } from 'node:crypto';
import type { BlockFile } from '../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';
import { GrowableBytes } from './growable-bytes.ts';
import { SeededRandom } from './seeded-random.ts';

export { FaultFileSystem, folderOf, type FileSystemEvent } from './fault-file-system.ts';

export type FileEvent =
  | { kind: 'write'; position: number; bytes: Uint8Array }
  | { kind: 'truncate'; size: number }
  | { kind: 'flush' };

/** A BlockFile over memory that logs every change, so a run can be cut anywhere afterwards. */
export class FaultFile implements BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  readonly log: FileEvent[];
  private readonly data: GrowableBytes;
  private closed = false;

  constructor(filePath: string, initial: Uint8Array, options: { readOnly?: boolean; log?: FileEvent[] } = {}) {
    this.path = filePath;
    this.readOnly = options.readOnly ?? false;
    this.log = options.log ?? [];
    this.data = new GrowableBytes(initial);
  }

  read(buffer: Uint8Array, position: number): number {
    this.assertOpen();
    return this.data.read(buffer, position);
  }

  write(buffer: Uint8Array, position: number): void {
    this.assertWritable();
    const bytes = buffer.slice();
    this.log.push({ kind: 'write', position, bytes });
    this.data.write(bytes, position);
  }

  flush(): void {
    this.assertOpen();
    if (this.readOnly) return;
    this.log.push({ kind: 'flush' });
  }

  size(): number {
    this.assertOpen();
    return this.data.length;
  }

  truncate(size: number): void {
    this.assertWritable();
    this.log.push({ kind: 'truncate', size });
    this.data.truncate(size);
  }

  close(): void {
    this.closed = true;
  }

  /** The file as the running program sees it (every write kept). */
  contents(): Uint8Array {
    return this.data.contents();
  }

  private assertOpen(): void {
    if (this.closed) throw new Qcow2Error('INTERNAL', `${this.path}: used after close`);
  }

  private assertWritable(): void {
    this.assertOpen();
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `${this.path}: opened read-only`);
  }
}

// ------------------------------------------------------------------ cutting the log

/**
 * Which of the writes since the last flush a power cut keeps: (a) all, (b) none, (c) a seeded
 * random subset of whole writes, or (d) `torn`: a seeded random subset of their 512-byte sectors
 * (a disk promises only that a sector is written whole, not a longer write).
 */
export type LossPattern = { kind: 'keep-all' } | { kind: 'lose-all' } | { kind: 'random'; seed: number } | { kind: 'torn'; seed: number };

export interface CrashPoint {
  /** How many log events happened before the power went. */
  cut: number;
  pattern: LossPattern;
}

/** Indices of the changes (writes, truncates) after the last flush before `cut`. */
export function unflushedChanges(log: readonly FileEvent[], cut: number): number[] {
  const indices: number[] = [];
  for (let index = 0; index < cut; index++) {
    const event = log[index];
    if (event?.kind === 'flush') indices.length = 0;
    else indices.push(index);
  }
  return indices;
}

const SECTOR = 512;

/** The changes that reach the disk when the power goes at `point`, in log order (torn writes as their surviving sectors). */
export function survivingChanges(log: readonly FileEvent[], point: CrashPoint): { index: number; event: FileEvent }[] {
  const kept: { index: number; event: FileEvent }[] = [];
  const unflushed = new Set(unflushedChanges(log, point.cut));
  const { pattern } = point;
  const random = pattern.kind === 'random' || pattern.kind === 'torn' ? new SeededRandom(pattern.seed) : null;
  const coin = (): boolean => (random?.next() ?? 0) < 0.5;
  for (let index = 0; index < point.cut; index++) {
    const event = log[index];
    if (event === undefined || event.kind === 'flush') continue;
    if (!unflushed.has(index) || pattern.kind === 'keep-all') kept.push({ index, event });
    else if (pattern.kind === 'lose-all') continue;
    else if (pattern.kind === 'torn' && event.kind === 'write') {
      for (let start = 0; start < event.bytes.length; ) {
        const end = Math.min(event.bytes.length, (Math.floor((event.position + start) / SECTOR) + 1) * SECTOR - event.position);
        if (coin()) kept.push({ index, event: { kind: 'write', position: event.position + start, bytes: event.bytes.subarray(start, end) } });
        start = end;
      }
    } else if (coin()) kept.push({ index, event });
  }
  return kept;
}

/**
 * Every crash point worth trying: a cut after each change (with (a) and (b), `randomSubsets`
 * seeded random subsets where two or more changes are unflushed, and `tornSubsets` torn ones where
 * an unflushed write spans more than one sector), plus the cut after the whole run.
 */
export function crashPoints(log: readonly FileEvent[], randomSubsets: number, seed: number, tornSubsets = 0): CrashPoint[] {
  const points: CrashPoint[] = [];
  for (let cut = 1; cut <= log.length; cut++) {
    if (log[cut - 1]?.kind === 'flush') continue;
    points.push({ cut, pattern: { kind: 'keep-all' } });
    const unflushed = unflushedChanges(log, cut).length;
    if (unflushed > 0) points.push({ cut, pattern: { kind: 'lose-all' } });
    if (unflushed >= 2) {
      for (let subset = 0; subset < randomSubsets; subset++) points.push({ cut, pattern: { kind: 'random', seed: (seed * 1_000_003 + cut * 997 + subset) >>> 0 } });
    }
    if (tornSubsets > 0 && spansSectors(log, cut)) {
      for (let subset = 0; subset < tornSubsets; subset++) points.push({ cut, pattern: { kind: 'torn', seed: (seed * 1_000_033 + cut * 991 + subset) >>> 0 } });
    }
  }
  points.push({ cut: log.length, pattern: { kind: 'keep-all' } });
  return points;
}

/** Whether some write since the last flush before `cut` covers more than one sector (so it can tear). */
function spansSectors(log: readonly FileEvent[], cut: number): boolean {
  return unflushedChanges(log, cut).some((index) => {
    const event = log[index];
    return event?.kind === 'write' && Math.floor(event.position / SECTOR) !== Math.floor((event.position + event.bytes.length - 1) / SECTOR);
  });
}

export function describeCrashPoint(log: readonly FileEvent[], point: CrashPoint): string {
  const unflushed = unflushedChanges(log, point.cut);
  const { pattern } = point;
  const what = pattern.kind === 'random' || pattern.kind === 'torn' ? `${pattern.kind} seed ${pattern.seed}` : pattern.kind;
  if (pattern.kind === 'torn') return `cut after event ${point.cut}/${log.length} (${what}; unflushed ${unflushed.length}, writes torn into 512-byte sectors)`;
  const kept = new Set(survivingChanges(log, point).map(({ index }) => index));
  const lost = unflushed.filter((index) => !kept.has(index));
  return `cut after event ${point.cut}/${log.length} (${what}; unflushed ${unflushed.length}, lost [${lost.join(',')}])`;
}

const PAGE = 512;

/**
 * The file a power cut leaves: the starting bytes with the surviving changes applied in order.
 * Kept as changed 512-byte pages over the shared starting bytes, so that crash states of a large
 * image cost only what changed; it reads as a BlockFile and materialises on demand.
 */
export class CrashState implements BlockFile {
  readonly path: string;
  readonly readOnly = true;
  private readonly base: Uint8Array;
  private readonly pages = new Map<number, Uint8Array>();
  private length: number;

  constructor(filePath: string, base: Uint8Array, changes: Iterable<FileEvent>) {
    this.path = filePath;
    this.base = base;
    this.length = base.length;
    for (const change of changes) {
      if (change.kind === 'write') this.applyWrite(change.bytes, change.position);
      else if (change.kind === 'truncate') this.applyTruncate(change.size);
    }
  }

  private page(index: number): Uint8Array {
    let page = this.pages.get(index);
    if (page === undefined) {
      page = new Uint8Array(PAGE);
      const start = index * PAGE;
      if (start < this.length) page.set(this.base.subarray(start, Math.min(start + PAGE, this.length, this.base.length)));
      this.pages.set(index, page);
    }
    return page;
  }

  private applyWrite(bytes: Uint8Array, position: number): void {
    if (position > this.length) this.zeroTail(this.length, position);
    let done = 0;
    while (done < bytes.length) {
      const at = position + done;
      const inPage = at % PAGE;
      const count = Math.min(PAGE - inPage, bytes.length - done);
      this.page(Math.floor(at / PAGE)).set(bytes.subarray(done, done + count), inPage);
      done += count;
    }
    this.length = Math.max(this.length, position + bytes.length);
  }

  private applyTruncate(size: number): void {
    if (size < this.length) this.zeroTail(size, this.length);
    this.length = size;
  }

  /** Bytes in [from, to) read as zeros from now on (cut off, or a hole past the old end). */
  private zeroTail(from: number, to: number): void {
    for (let at = from; at < to; ) {
      const inPage = at % PAGE;
      const count = Math.min(PAGE - inPage, to - at);
      const index = Math.floor(at / PAGE);
      if (this.pages.has(index) || at < this.base.length) this.page(index).fill(0, inPage, inPage + count);
      at += count;
    }
  }

  read(buffer: Uint8Array, position: number): number {
    if (position >= this.length) return 0;
    const total = Math.min(buffer.length, this.length - position);
    let done = 0;
    while (done < total) {
      const at = position + done;
      const inPage = at % PAGE;
      const count = Math.min(PAGE - inPage, total - done);
      const page = this.pages.get(Math.floor(at / PAGE));
      const target = buffer.subarray(done, done + count);
      if (page !== undefined) target.set(page.subarray(inPage, inPage + count));
      else if (at < this.base.length) {
        const available = Math.min(count, this.base.length - at);
        target.set(this.base.subarray(at, at + available));
        target.fill(0, available);
      } else target.fill(0);
      done += count;
    }
    return total;
  }

  write(): void {
    throw new Qcow2Error('READ_ONLY', `${this.path}: a crash state is read-only`);
  }

  flush(): void {}

  size(): number {
    return this.length;
  }

  truncate(): void {
    throw new Qcow2Error('READ_ONLY', `${this.path}: a crash state is read-only`);
  }

  close(): void {}

  bytes(): Uint8Array {
    const bytes = new Uint8Array(this.length);
    this.read(bytes, 0);
    return bytes;
  }

  /** Equal signatures mean equal bytes (the same base is assumed). */
  signature(): string {
    const hash = createHash('sha1');
    hash.update(String(this.length));
    for (const index of [...this.pages.keys()].sort((a, b) => a - b)) {
      const page = this.pages.get(index);
      if (page === undefined) continue;
      const start = index * PAGE;
      // A page identical to the starting bytes changes nothing: leave it out.
      if (start + PAGE <= this.base.length && equalBytes(page, this.base.subarray(start, start + PAGE))) continue;
      hash.update(`${index}:`);
      hash.update(page);
    }
    return hash.digest('hex');
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let index = 0; index < a.length; index++) if (a[index] !== b[index]) return false;
  return true;
}

/** The file after a power cut at `point`, given the bytes the run started from and its log. */
export function crashState(filePath: string, initial: Uint8Array, log: readonly FileEvent[], point: CrashPoint): CrashState {
  return new CrashState(filePath, initial, survivingChanges(log, point).map(({ event }) => event));
}
