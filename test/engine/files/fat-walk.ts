/**
 * What a user's browse, files-diff and copy-out do to a guest filesystem, in one bounded pass:
 * list every folder, stat, read and locate every file. Used on hostile volumes by the unit tests
 * and the fuzzer: it must end with a result or a typed error.
 */
import type { GuestFilesystem } from '../../../src/shared/qcow2/files/filesystem.ts';

export interface WalkLimits {
  /** Entries visited at most (a hostile volume may hold many legitimately). */
  entries: number;
  /** File bytes read at most. */
  bytes: number;
}

const DEFAULT_LIMITS: WalkLimits = { entries: 20_000, bytes: 16 * 1024 * 1024 };
const CHUNK = 64 * 1024;

/** Walks the volume from its root; returns how many entries and bytes it saw. */
export async function walkEverything(filesystem: GuestFilesystem, limits: WalkLimits = DEFAULT_LIMITS): Promise<{ entries: number; bytes: number }> {
  const seen = { entries: 0, bytes: 0 };
  const chunk = new Uint8Array(CHUNK);
  const pending = ['/'];
  await filesystem.stat('/');
  while (pending.length > 0 && seen.entries < limits.entries) {
    const folder = pending.pop() as string;
    await filesystem.extents?.(folder);
    for (const entry of await filesystem.list(folder)) {
      if (++seen.entries >= limits.entries) break;
      await filesystem.stat(entry.path);
      if (entry.kind === 'directory') {
        pending.push(entry.path);
        continue;
      }
      await filesystem.extents?.(entry.path);
      for (let offset = 0; offset < entry.size && seen.bytes < limits.bytes; ) {
        const count = await filesystem.read(entry.path, chunk, offset);
        if (count === 0) break;
        offset += count;
        seen.bytes += count;
      }
    }
  }
  return seen;
}
