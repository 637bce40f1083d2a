import { unwatchFile, watchFile, type Stats } from 'node:fs';
import type { EventSink } from './events.ts';

export interface ImageWatcherOptions {
  emit: EventSink;
  /** How often each watched file is stat'ed. */
  pollMs?: number;
  /** Changes closer together than this become one `image.changed`. */
  quietMs?: number;
}

/** Watches open disks for changes made by other programs (a `qemu-img snapshot -c`, a running VM). */
export interface ImageWatcher {
  /** Counted: each watch needs its own unwatch. */
  watch(path: string): void;
  unwatch(path: string): void;
  close(): void;
}

const DEFAULT_POLL_MS = 700;
const DEFAULT_QUIET_MS = 250;

/**
 * fs.watchFile polls stat, so it sees in-place writes (qemu-img rewrites the image, it does not
 * replace it), renames over the file, and network file systems alike; inotify misses some of these.
 */
export function createImageWatcher(options: ImageWatcherOptions): ImageWatcher {
  const pollMs = options.pollMs ?? DEFAULT_POLL_MS;
  const quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
  const watched = new Map<string, { count: number; listener: (current: Stats, previous: Stats) => void; timer?: ReturnType<typeof setTimeout> }>();

  function stop(path: string): void {
    const entry = watched.get(path);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    unwatchFile(path, entry.listener);
    watched.delete(path);
  }

  return {
    watch(path) {
      const existing = watched.get(path);
      if (existing !== undefined) {
        existing.count += 1;
        return;
      }
      const entry: { count: number; listener: (current: Stats, previous: Stats) => void; timer?: ReturnType<typeof setTimeout> } = {
        count: 1,
        listener: (current, previous) => {
          if (current.mtimeMs === previous.mtimeMs && current.size === previous.size && current.ino === previous.ino) return;
          clearTimeout(entry.timer);
          entry.timer = setTimeout(() => options.emit('image.changed', { path }), quietMs);
        },
      };
      watched.set(path, entry);
      watchFile(path, { interval: pollMs, persistent: false }, entry.listener);
    },
    unwatch(path) {
      const entry = watched.get(path);
      if (entry === undefined) return;
      entry.count -= 1;
      if (entry.count <= 0) stop(path);
    },
    close() {
      for (const path of [...watched.keys()]) stop(path);
    },
  };
}
