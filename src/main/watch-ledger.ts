/**
 * The disks one page asked main to watch, so that they can be released when the page goes (a
 * browser tab closed or reloaded): main's watcher counts each watch and needs an unwatch for each,
 * and a page that goes away sends none — its disks stayed polled, and their change events went to
 * every later page, growing with each reload.
 */
import type { RequestHandle } from './handlers.ts';

export interface WatchLedger {
  /** The handle, recording each watch and unwatch that succeeded. */
  handle: RequestHandle;
  /** Unwatches whatever the page still watches, and any watch still under way when it answers. */
  releaseAll(): Promise<void>;
}

function watchedPath(args: unknown): string | null {
  if (typeof args !== 'object' || args === null) return null;
  const path = (args as { path?: unknown }).path;
  return typeof path === 'string' ? path : null;
}

export function watchLedger(handle: RequestHandle): WatchLedger {
  const watched = new Map<string, number>();
  let released = false;
  return {
    async handle(name, args) {
      const reply = await handle(name, args);
      const path = watchedPath(args);
      if (!reply.ok || path === null) return reply;
      // A watch that succeeded after the page went (asked just before a reload) goes at once.
      if (name === 'image.watch' && released) {
        await handle('image.unwatch', { path });
        return reply;
      }
      if (name === 'image.watch') watched.set(path, (watched.get(path) ?? 0) + 1);
      else if (name === 'image.unwatch') {
        const count = watched.get(path) ?? 0;
        if (count <= 1) watched.delete(path);
        else watched.set(path, count - 1);
      }
      return reply;
    },
    async releaseAll() {
      released = true;
      const left = [...watched];
      watched.clear();
      for (const [path, count] of left) for (let index = 0; index < count; index++) await handle('image.unwatch', { path });
    },
  };
}
