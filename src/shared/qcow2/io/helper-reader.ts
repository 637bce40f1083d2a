/**
 * File reads done by a helper thread into shared memory while the caller reads something else.
 * Reading page-cached data is mostly the kernel copying it, one thread at a time per caller: a
 * second thread reading the other half (a rewrite's verify compares two files) halves the wait.
 *
 * queue() names a range of the file and where in `buffer` it goes; wait() returns once every
 * queued read is done (a short read leaves zeros, as past the end of a file). Until the helper
 * has started, queued reads are done on the caller's thread, so a caller never waits for a thread
 * that is still starting. The helper is plain JavaScript run from its source text (no file of its
 * own in a bundle), like write-behind-file.ts's writer.
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import { alignedSharedBytes } from './aligned-bytes.ts';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { startHelperThread } from './helper-threads.ts';

/** Queued reads at most; each is an offset in the buffer, a byte count and a file position. */
const COMMANDS = 256;
const FIELDS = 4;

/** Indexes into the shared Int32 control words. */
const SUBMITTED = 0;
const COMPLETED = 1;
const FAILED = 2;
const READY = 3;
const STOPPED = 4;

const OP_READ = 1;
const OP_STOP = 2;

interface ReaderData {
  fd: number;
  control: Int32Array;
  commands: Float64Array;
  commandCount: number;
  buffer: Uint8Array;
  errors: MessagePort;
}

export class HelperReader {
  /** Where queued reads land: page-aligned shared memory of the size asked for. */
  readonly buffer: Uint8Array;
  private readonly path: string;
  private readonly fd: number;
  private readonly control: Int32Array;
  private readonly commands: Float64Array;
  private readonly errors: MessagePort;
  private worker: Worker | null;
  private submitted = 0;

  /** A reader of `fd` with a buffer of `bufferBytes`, or null when no helper thread can start (the caller reads itself). */
  static start(fd: number, filePath: string, bufferBytes: number): HelperReader | null {
    const control = new Int32Array(new SharedArrayBuffer(5 * 4));
    const commands = new Float64Array(new SharedArrayBuffer(COMMANDS * FIELDS * 8));
    const buffer = alignedSharedBytes(bufferBytes);
    const channel = new MessageChannel();
    const workerData: ReaderData = { fd, control, commands, commandCount: COMMANDS, buffer, errors: channel.port2 };
    const worker = startHelperThread(`(${readerThread.toString()})()`, { eval: true, workerData, transferList: [channel.port2] });
    if (worker === null) {
      channel.port1.close();
      return null;
    }
    worker.unref();
    return new HelperReader(fd, filePath, buffer, control, commands, worker, channel.port1);
  }

  private constructor(fd: number, filePath: string, buffer: Uint8Array, control: Int32Array, commands: Float64Array, worker: Worker, errors: MessagePort) {
    this.fd = fd;
    this.path = filePath;
    this.buffer = buffer;
    this.control = control;
    this.commands = commands;
    this.worker = worker;
    this.errors = errors;
  }

  /** Reads `length` bytes at file `position` into buffer[at, at + length), now or on the helper thread. */
  queue(at: number, position: number, length: number): void {
    if (this.worker === null) throw new Qcow2Error('INTERNAL', `${this.path}: read after close`);
    if (at < 0 || length < 0 || at + length > this.buffer.length) throw new Qcow2Error('INTERNAL', `${this.path}: a read past the helper's buffer`);
    if (this.submitted === 0 && Atomics.load(this.control, READY) === 0) {
      this.readHere(at, position, length);
      return;
    }
    this.submit(OP_READ, at, position, length);
  }

  /** Returns once every queued read is done; throws the first read's failure. */
  wait(): void {
    this.waitForCompleted(this.submitted);
    this.throwIfFailed();
  }

  /** Stops the helper thread (after what is queued). The file descriptor stays its owner's. */
  close(): void {
    if (this.worker === null) return;
    try {
      this.submit(OP_STOP, 0, 0, 0);
      // A helper that never started has nothing to do: it stops by itself once it runs.
      if (this.submitted > 1) this.waitForCompleted(this.submitted);
    } finally {
      this.worker = null;
      this.errors.close();
    }
  }

  private readHere(at: number, position: number, length: number): void {
    let done = 0;
    try {
      while (done < length) {
        const count = fs.readSync(this.fd, this.buffer, at + done, length - done, position + done);
        if (count === 0) break;
        done += count;
      }
    } catch (error) {
      throw toQcow2Error(error, this.path);
    }
    this.buffer.fill(0, at + done, at + length);
  }

  private submit(op: number, at: number, position: number, length: number): void {
    // The queue entry this one reuses must have been done.
    this.waitForCompleted(this.submitted - COMMANDS + 1);
    this.commands.set([op, at, length, position], (this.submitted % COMMANDS) * FIELDS);
    this.submitted++;
    Atomics.store(this.control, SUBMITTED, this.submitted);
    Atomics.notify(this.control, SUBMITTED);
  }

  private waitForCompleted(count: number): void {
    for (;;) {
      const completed = Atomics.load(this.control, COMPLETED);
      if (completed >= count) return;
      if (Atomics.load(this.control, STOPPED) !== 0 && Atomics.load(this.control, COMPLETED) < count) {
        this.throwIfFailed();
        throw new Qcow2Error('INTERNAL', `${this.path}: the thread reading the file stopped before it had read everything`);
      }
      Atomics.wait(this.control, COMPLETED, completed);
    }
  }

  private throwIfFailed(): void {
    if (Atomics.load(this.control, FAILED) === 0) return;
    const message = receiveMessageOnPort(this.errors)?.message as { code?: unknown; message?: unknown } | undefined;
    const error = Object.assign(new Error(typeof message?.message === 'string' ? message.message : 'a read failed'), { code: message?.code });
    throw toQcow2Error(error, this.path);
  }
}

/** The helper thread's whole program: it must not use anything from outside its own body. */
function readerThread(): void {
  // getBuiltinModule, not require: a bundler rewrites require calls into helpers this text would not have.
  const data = process.getBuiltinModule('node:worker_threads').workerData as ReaderData;
  const [submittedIndex, completedIndex, failedIndex, readyIndex, stoppedIndex] = [0, 1, 2, 3, 4];
  const [opRead, opStop] = [1, 2];
  try {
    const fs = process.getBuiltinModule('node:fs');
    Atomics.store(data.control, readyIndex, 1);
    let failed = false;
    let completed = 0;
    for (;;) {
      while (Atomics.load(data.control, submittedIndex) === completed) Atomics.wait(data.control, submittedIndex, completed);
      const entry = (completed % data.commandCount) * 4; // FIELDS numbers each
      const [op, at = 0, length = 0, position = 0] = data.commands.subarray(entry, entry + 4);
      if (op === opRead && !failed) {
        try {
          let done = 0;
          while (done < length) {
            const count = fs.readSync(data.fd, data.buffer, at + done, length - done, position + done);
            if (count === 0) break;
            done += count;
          }
          data.buffer.fill(0, at + done, at + length);
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
    Atomics.store(data.control, stoppedIndex, 1);
    Atomics.notify(data.control, completedIndex);
    data.errors.close();
  }
}
