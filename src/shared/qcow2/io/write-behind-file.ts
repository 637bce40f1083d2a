/**
 * A BlockFile for writing a new file front to back (convert's output) whose writes are done by a
 * helper thread, so the caller reads and inspects the next chunk while the previous one is written:
 * the disk's reads and writes overlap, as in qemu-img's parallel requests.
 *
 * write() copies the bytes into one of a few shared slots and returns; the helper thread writes
 * them in order with pwrite. Where asked, this file starts the kernel's writeback of what the
 * helper has written (file-writeback.ts), so the disk writes while the copy goes on and the final
 * fdatasync has little left to wait for; a write error is still reported by that fdatasync
 * (flush()), which this file runs itself after the queue drains. The helper is plain JavaScript
 * (no native module), so it can be stopped at any moment, even while it starts.
 * A caller that fills its buffers itself can borrow a slot (lendBuffer) and write from it, which
 * queues the write without copying it.
 * Until the helper thread has started, writes are done directly (a small file never waits for it).
 * Every other call (read, size, truncate, flush, close) first waits for the queued writes, so the
 * file behaves exactly like the one it wraps; a failed queued write fails the next call with its
 * own error (ENOSPC, EIO), typed like any other.
 */
import type { MessagePort, Worker } from 'node:worker_threads';
import { alignedSharedBytes } from './aligned-bytes.ts';
import { hasDescriptor, type BlockFile, type DescribedBlockFile } from './block-file.ts';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { startWriteback, WRITEBACK_STEP_BYTES } from './file-writeback.ts';
import { HELPER_THREAD_NAMES, startHelperThread } from './helper-threads.ts';
import { WRITE_PIECE_BYTES } from './write-pieces.ts';

const SLOT_BYTES = 4 * 1024 * 1024;
/** Three slots keep the helper busy while the next chunk is read (six measured no faster here, and cost 12 MiB more). */
const SLOTS = 3;
/** Queued operations at most; each names its bytes by slot, offset and length. */
const COMMANDS = 64;
/** Numbers per command: operation, slot, offset in the slot, byte count, file position. */
const FIELDS = 5;

/** Indexes into the shared Int32 control words. */
const SUBMITTED = 0;
const COMPLETED = 1;
const FAILED = 2;
/** Set by the helper thread once it runs (starting one takes tens of milliseconds). */
const READY = 3;
/** Set by the helper thread when it ends, however it ends. */
const STOPPED = 4;

/** Command operations. */
const OP_WRITE = 1;
const OP_STOP = 2;

export interface WriteBehindOptions {
  /** Start the kernel's writeback as data is written (for a file that will be flushed at the end). */
  startWriteback: boolean;
}

/**
 * Wraps `file` for writing behind when it is a real file (it has a descriptor the helper thread can
 * use); any other BlockFile (the tests' fault-injecting ones) is returned as it is, and so is a
 * real one when no helper thread can start (helper-threads.ts says why, once).
 */
export function writeBehind(file: BlockFile, options: WriteBehindOptions): BlockFile {
  if (file.readOnly || !hasDescriptor(file)) return file;
  const shared = newSharedState();
  // Taken here, not imported: node:worker_threads loads Node's streams, a few milliseconds of every command's start-up.
  const channel = new (process.getBuiltinModule('node:worker_threads').MessageChannel)();
  const workerData: WriterData = { fd: file.descriptor, ...shared, commandCount: COMMANDS, slotBytes: SLOT_BYTES, pieceBytes: WRITE_PIECE_BYTES, errors: channel.port2 };
  const worker = startHelperThread(`(${writerThread.toString()})()`, HELPER_THREAD_NAMES.writeBehind, { eval: true, workerData, transferList: [channel.port2] });
  if (worker === null) {
    channel.port1.close();
    return file;
  }
  worker.unref();
  return new WriteBehindFile(file, options, shared, worker, channel.port1);
}

interface SharedState {
  control: Int32Array;
  commands: Float64Array;
  slots: Uint8Array;
}

function newSharedState(): SharedState {
  return {
    control: new Int32Array(new SharedArrayBuffer(5 * 4)),
    commands: new Float64Array(new SharedArrayBuffer(COMMANDS * FIELDS * 8)),
    slots: alignedSharedBytes(SLOTS * SLOT_BYTES),
  };
}

export class WriteBehindFile implements BlockFile {
  readonly path: string;
  readonly readOnly = false;
  private readonly file: DescribedBlockFile;
  private readonly control: Int32Array;
  /** The queue: COMMANDS entries of FIELDS numbers, used in turn. */
  private readonly commands: Float64Array;
  private readonly slots: Uint8Array;
  /** Per slot, how many commands must have completed before it is free again. */
  private readonly busyUntil: number[] = new Array<number>(SLOTS).fill(0);
  /** The slot lent to the caller (lendBuffer), or -1. */
  private lent = -1;
  private nextSlot = 0;
  /** 0 when writeback is not started; else how many written bytes to gather before starting it. */
  private readonly writebackStepBytes: number;
  /** Queued writes whose writeback is not started yet: [command number, position, end]. */
  private readonly unstarted: [number, number, number][] = [];
  private readonly errors: MessagePort;
  private worker: Worker | null;
  private submitted = 0;
  private failure: Qcow2Error | null = null;

  constructor(file: DescribedBlockFile, options: WriteBehindOptions, shared: SharedState, worker: Worker, errors: MessagePort) {
    this.path = file.path;
    this.file = file;
    this.writebackStepBytes = options.startWriteback ? WRITEBACK_STEP_BYTES : 0;
    this.control = shared.control;
    this.commands = shared.commands;
    this.slots = shared.slots;
    this.errors = errors;
    this.worker = worker;
  }

  read(buffer: Uint8Array, position: number): number {
    this.drain();
    return this.file.read(buffer, position);
  }

  write(buffer: Uint8Array, position: number): void {
    this.throwIfFailed();
    // Nothing is queued before the helper runs, so these direct writes come before every queued one.
    if (this.submitted === 0 && Atomics.load(this.control, READY) === 0) {
      this.file.write(buffer, position);
      return;
    }
    if (this.lent >= 0 && buffer.buffer === this.slots.buffer) {
      const offset = buffer.byteOffset - this.lent * SLOT_BYTES;
      if (offset >= 0 && offset + buffer.length <= SLOT_BYTES) {
        this.submit(OP_WRITE, this.lent, offset, buffer.length, position);
        return;
      }
    }
    for (let done = 0; done < buffer.length; done += SLOT_BYTES) {
      const piece = buffer.subarray(done, Math.min(buffer.length, done + SLOT_BYTES));
      const slot = this.freeSlot();
      this.slots.set(piece, slot * SLOT_BYTES);
      this.submit(OP_WRITE, slot, 0, piece.length, position + done);
    }
  }

  /**
   * A buffer of `length` bytes (at most one slot) to fill and write from without a copy, or null.
   * It stays the caller's until the next call: the caller must not change bytes it has passed to
   * write(), nor use the buffer at all after asking for the next one.
   */
  lendBuffer(length: number): Uint8Array | null {
    if (this.worker === null || length > SLOT_BYTES) return null;
    // The previous loan returns; its queued writes keep it busy until they are done.
    this.lent = -1;
    const slot = this.freeSlot();
    this.lent = slot;
    return this.slots.subarray(slot * SLOT_BYTES, slot * SLOT_BYTES + length);
  }

  flush(): void {
    this.drain();
    this.file.flush();
  }

  size(): number {
    this.drain();
    return this.file.size();
  }

  truncate(size: number): void {
    this.drain();
    this.file.truncate(size);
  }

  /** Stops the helper thread (after the queued writes) and closes the file; reports a queued write's failure. */
  close(): void {
    try {
      if (this.worker !== null) {
        this.lent = -1;
        this.submit(OP_STOP, -1, 0, 0, 0);
        // A helper that never started has nothing to write: it stops by itself once it runs.
        if (this.submitted > 1) this.waitForCompleted(this.submitted);
        this.worker = null;
        try {
          this.throwIfFailed();
        } finally {
          this.errors.close();
        }
      }
      this.throwIfFailed();
    } finally {
      this.file.close();
    }
  }

  /** Waits until every queued write is done; throws the first failure among them. */
  private drain(): void {
    if (this.submitted === 0) return;
    this.waitForCompleted(this.submitted);
    this.throwIfFailed();
  }

  /** A slot neither lent nor used by a queued write, waiting for the helper if none is. */
  private freeSlot(): number {
    if (this.worker === null) throw new Qcow2Error('INTERNAL', `${this.path}: used after close`);
    for (;;) {
      const completed = Atomics.load(this.control, COMPLETED);
      for (let step = 0; step < SLOTS; step++) {
        const slot = (this.nextSlot + step) % SLOTS;
        if (slot !== this.lent && (this.busyUntil[slot] ?? 0) <= completed) {
          this.nextSlot = (slot + 1) % SLOTS;
          return slot;
        }
      }
      this.throwIfHelperStopped();
      Atomics.wait(this.control, COMPLETED, completed);
    }
  }

  private submit(op: number, slot: number, offset: number, length: number, position: number): void {
    if (this.worker === null) throw new Qcow2Error('INTERNAL', `${this.path}: used after close`);
    // The queue entry this one reuses must have been done.
    this.waitForCompleted(this.submitted - COMMANDS + 1);
    this.commands.set([op, slot, offset, length, position], (this.submitted % COMMANDS) * FIELDS);
    this.submitted++;
    if (slot >= 0) this.busyUntil[slot] = this.submitted;
    Atomics.store(this.control, SUBMITTED, this.submitted);
    Atomics.notify(this.control, SUBMITTED);
    if (this.writebackStepBytes > 0 && op === OP_WRITE) {
      this.unstarted.push([this.submitted, position, position + length]);
      this.startWritebackOfWritten();
    }
  }

  /** Starts writeback of the range the helper has written since the last start, once it is large enough. */
  private startWritebackOfWritten(): void {
    const completed = Atomics.load(this.control, COMPLETED);
    let from = Number.POSITIVE_INFINITY;
    let to = 0;
    let count = 0;
    for (const [command, start, end] of this.unstarted) {
      if (command > completed) break;
      from = Math.min(from, start);
      to = Math.max(to, end);
      count++;
    }
    if (count === 0 || to - from < this.writebackStepBytes) return;
    this.unstarted.splice(0, count);
    startWriteback(this.file.descriptor, from, to - from);
  }

  private waitForCompleted(count: number): void {
    for (;;) {
      const completed = Atomics.load(this.control, COMPLETED);
      if (completed >= count) return;
      this.throwIfHelperStopped();
      Atomics.wait(this.control, COMPLETED, completed);
    }
  }

  /** A helper that ended before its queue was done (it crashed, or was killed) would leave a wait forever. */
  private throwIfHelperStopped(): void {
    if (Atomics.load(this.control, STOPPED) === 0 || Atomics.load(this.control, COMPLETED) >= this.submitted) return;
    this.throwIfFailed();
    throw new Qcow2Error('INTERNAL', `${this.path}: the thread writing the file stopped before it had written everything`);
  }

  private throwIfFailed(): void {
    if (this.failure === null && Atomics.load(this.control, FAILED) !== 0) {
      const message = process.getBuiltinModule('node:worker_threads').receiveMessageOnPort(this.errors)?.message as { code?: unknown; message?: unknown } | undefined;
      const error = Object.assign(new Error(typeof message?.message === 'string' ? message.message : 'a write failed'), { code: message?.code });
      this.failure = toQcow2Error(error, this.path);
    }
    if (this.failure !== null) throw this.failure;
  }
}

interface WriterData {
  fd: number;
  control: Int32Array;
  commands: Float64Array;
  commandCount: number;
  slots: Uint8Array;
  slotBytes: number;
  /** The most one pwrite carries (write-pieces.ts says why). */
  pieceBytes: number;
  errors: MessagePort;
}

/**
 * The helper thread's whole program. It runs from its source text (an eval worker), so it needs no
 * file of its own in the app's bundle: it must not use anything from outside its own body.
 */
function writerThread(): void {
  // getBuiltinModule, not require: a bundler rewrites require calls into helpers this text would not have.
  const data = process.getBuiltinModule('node:worker_threads').workerData as WriterData;
  const [submittedIndex, completedIndex, failedIndex, readyIndex, stoppedIndex] = [0, 1, 2, 3, 4];
  const [opWrite, opStop] = [1, 2];
  try {
    const fs = process.getBuiltinModule('node:fs');
    Atomics.store(data.control, readyIndex, 1);
    let failed = false;
    let completed = 0;
    for (;;) {
      while (Atomics.load(data.control, submittedIndex) === completed) Atomics.wait(data.control, submittedIndex, completed);
      const entry = (completed % data.commandCount) * 5; // FIELDS numbers each
      const [op, slot = 0, offset = 0, length = 0, position = 0] = data.commands.subarray(entry, entry + 5);
      if (op === opWrite && !failed) {
        try {
          const start = slot * data.slotBytes + offset;
          const bytes = data.slots.subarray(start, start + length);
          for (let done = 0; done < length; ) done += fs.writeSync(data.fd, bytes, done, Math.min(data.pieceBytes, length - done), position + done);
        } catch (error) {
          failed = true;
          data.errors.postMessage({ code: (error as { code?: unknown }).code, message: error instanceof Error ? error.message : String(error) });
          Atomics.store(data.control, failedIndex, 1);
        }
      }
      completed++;
      Atomics.store(data.control, completedIndex, completed);
      Atomics.notify(data.control, completedIndex);
      if (op === opStop) break;
    }
  } finally {
    // However this ends, a caller waiting for a command must wake and see it.
    Atomics.store(data.control, stoppedIndex, 1);
    Atomics.notify(data.control, completedIndex);
    data.errors.close();
  }
}
