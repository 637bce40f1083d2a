/**
 * What replaying a volume's journal or log gave (ext's jbd2, XFS's log, btrfs's log tree), kept per
 * thread for the next job that opens the same bytes: the app opens a state afresh for every folder
 * it lists, and a snapshot of a running guest has its log replayed each time (50–400 ms of an
 * XFS log here) where the folder itself takes a millisecond.
 *
 * Kept only under a volume identity (state-identity.ts) that changes whenever the bytes could have:
 * without one, nothing is kept. A kept value is shared by every filesystem opened from it, so it
 * must never be changed after it is made. Least recently used first out, within a byte budget.
 */

/** Says which bytes a volume holds: the same string only while those bytes cannot have changed. */
export interface VolumeOpenContext {
  readonly identity: string | null;
}

export const NO_IDENTITY: VolumeOpenContext = { identity: null };

const BUDGET_BYTES = 96 * 1024 * 1024;
/** A value larger than this is not kept (it would push out everything else for one volume). */
const MAX_VALUE_BYTES = 48 * 1024 * 1024;
const MAX_VALUES = 32;

interface Kept {
  value: unknown;
  bytes: number;
}

/** A Map iterates in insertion order: a value used again is put back at the end, the first is the least recently used. */
const kept = new Map<string, Kept>();
let keptBytes = 0;
/** Replays made and replays taken from the memo instead, since the thread began (tests). */
const counts = { made: 0, reused: 0 };

/**
 * The value `make` gives for the volume `context` names, made once per identity and `what` (the
 * replay's name, "xfs-log"). `bytesOf` estimates what the value holds. A failure is not kept.
 */
export async function rememberedReplay<T>(context: VolumeOpenContext, what: string, make: () => Promise<T>, bytesOf: (value: T) => number): Promise<T> {
  if (context.identity === null) {
    const value = await make();
    counts.made++;
    return value;
  }
  const key = `${what}\u0000${context.identity}`;
  const found = kept.get(key);
  if (found !== undefined) {
    kept.delete(key);
    kept.set(key, found);
    counts.reused++;
    return found.value as T;
  }
  const value = await make();
  counts.made++;
  // Another job of this thread may have made it meanwhile.
  if (kept.has(key)) return value;
  const bytes = bytesOf(value);
  if (bytes <= MAX_VALUE_BYTES) {
    kept.set(key, { value, bytes });
    keptBytes += bytes;
    for (const [oldest, entry] of kept) {
      if (keptBytes <= BUDGET_BYTES && kept.size <= MAX_VALUES) break;
      kept.delete(oldest);
      keptBytes -= entry.bytes;
    }
  }
  return value;
}

/** How many replays are kept and their estimated bytes, and how many were made and reused (tests). */
export function keptReplays(): { count: number; bytes: number; made: number; reused: number } {
  return { count: kept.size, bytes: keptBytes, ...counts };
}

/** Forgets every kept replay (tests). */
export function forgetReplays(): void {
  kept.clear();
  keptBytes = 0;
  counts.made = 0;
  counts.reused = 0;
}
