import { realpath } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Qcow2Error } from '../shared/qcow2/errors.ts';

export type Access = 'read' | 'write';
export type Release = () => void;

interface Waiter {
  access: Access;
  grant: () => void;
}

interface ImageState {
  readers: number;
  writer: boolean;
  waiting: Waiter[];
}

/**
 * Per image: any number of readers or one writer, granted strictly in arrival order — a writer
 * waits for the readers before it, and readers after a waiting writer wait for it. Images are
 * independent of each other.
 */
export class ImageQueue {
  private readonly images = new Map<string, ImageState>();

  /** Resolves when the access is granted; call the returned function exactly once to give it back. */
  acquire(key: string, access: Access, signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(cancelledWhileWaiting());
    const state = this.stateOf(key);
    return new Promise<Release>((resolvePromise, rejectPromise) => {
      const waiter: Waiter = {
        access,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolvePromise(this.releaser(key, access));
        },
      };
      const onAbort = (): void => {
        const position = state.waiting.indexOf(waiter);
        if (position === -1) return;
        state.waiting.splice(position, 1);
        rejectPromise(cancelledWhileWaiting());
        // A waiting writer that leaves may unblock the readers queued behind it.
        this.grantWaiting(key, state);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      state.waiting.push(waiter);
      this.grantWaiting(key, state);
    });
  }

  async run<T>(key: string, access: Access, work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const release = await this.acquire(key, access, signal);
    try {
      return await work();
    } finally {
      release();
    }
  }

  /** Readers and writers holding or waiting for an image; for tests and diagnostics. */
  status(key: string): { readers: number; writer: boolean; waiting: Access[] } {
    const state = this.images.get(key);
    return {
      readers: state?.readers ?? 0,
      writer: state?.writer ?? false,
      waiting: state?.waiting.map((waiter) => waiter.access) ?? [],
    };
  }

  private stateOf(key: string): ImageState {
    let state = this.images.get(key);
    if (state === undefined) {
      state = { readers: 0, writer: false, waiting: [] };
      this.images.set(key, state);
    }
    return state;
  }

  private grantWaiting(key: string, state: ImageState): void {
    for (;;) {
      const head = state.waiting[0];
      if (head === undefined || state.writer) break;
      if (head.access === 'write' && state.readers > 0) break;
      state.waiting.shift();
      if (head.access === 'write') state.writer = true;
      else state.readers += 1;
      head.grant();
      if (head.access === 'write') break;
    }
    if (state.readers === 0 && !state.writer && state.waiting.length === 0) this.images.delete(key);
  }

  private releaser(key: string, access: Access): Release {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const state = this.stateOf(key);
      if (access === 'write') state.writer = false;
      else state.readers -= 1;
      this.grantWaiting(key, state);
    };
  }
}

/**
 * The queue key of an image: its real path, so two names of one file share a queue. A file that
 * does not exist yet (an image about to be created) is keyed by its folder's real path.
 */
export async function imageKey(path: string): Promise<string> {
  // Asked of the kernel as given: resolve() would fold a `..` after a linked folder as text (another file).
  try {
    return await realpath(path);
  } catch {
    try {
      return join(await realpath(dirname(path)), basename(path));
    } catch {
      return resolve(path);
    }
  }
}

function cancelledWhileWaiting(): Qcow2Error {
  return new Qcow2Error('CANCELLED', 'Cancelled while waiting for the image; nothing was changed');
}
