/**
 * An overlay's internal snapshots read through its backing chain wherever they allocate nothing,
 * like its current disk. commit and rebase keep the current disk as it is, but changing what the
 * chain shows there would silently change such a snapshot (qemu-img does so without a word).
 * Cowbell finds the snapshots that would read differently and refuses instead.
 */
import { Qcow2Error } from '../errors.ts';
import { bytesEqual } from '../format/zeroes.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import type { Qcow2Image } from '../image/image.ts';
import { visitLayerRuns } from '../image/layer-runs.ts';
import type { JobContext } from '../job-context.ts';

const PIECE_BYTES = 1024 * 1024;

/** A range of guest bytes. */
export interface GuestRange {
  start: number;
  length: number;
}

/**
 * Names of the overlay's snapshots that would read differently where they allocate nothing, if
 * the chain below showed `after` instead of `before` over the ranges `exposed` picks out of their holes.
 */
export function snapshotsThatWouldChange(
  top: Qcow2Image,
  before: GuestReader | null,
  after: GuestReader | null,
  exposed: (hole: GuestRange) => GuestRange[],
  job: JobContext,
): string[] {
  const changed: string[] = [];
  for (const snapshot of top.snapshots) {
    job.throwIfCancelled();
    const l1 = top.loadSnapshotL1(snapshot);
    const size = snapshot.diskSize ?? top.virtualSize;
    const holes: GuestRange[] = [];
    visitLayerRuns(top, l1, 0, size, (start, length, kind) => {
      if (kind !== 'unallocated') return;
      const last = holes.at(-1);
      if (last !== undefined && last.start + last.length === start) last.length += length;
      else holes.push({ start, length });
    });
    if (holes.some((hole) => exposed(hole).some((range) => differs(before, after, range)))) changed.push(snapshot.name);
  }
  return changed;
}

function differs(before: GuestReader | null, after: GuestReader | null, range: GuestRange): boolean {
  const a = new Uint8Array(Math.min(PIECE_BYTES, range.length));
  const b = new Uint8Array(a.length);
  for (let done = 0; done < range.length; done += a.length) {
    const length = Math.min(a.length, range.length - done);
    read(before, a.subarray(0, length), range.start + done);
    read(after, b.subarray(0, length), range.start + done);
    if (!bytesEqual(a.subarray(0, length), b.subarray(0, length))) return true;
  }
  return false;
}

function read(reader: GuestReader | null, target: Uint8Array, guestOffset: number): void {
  if (reader === null || guestOffset >= reader.virtualSize) target.fill(0);
  else reader.readInto(target, guestOffset);
}

export function refuseChangingSnapshots(names: string[], operation: string): void {
  if (names.length === 0) return;
  const list = names.map((name) => `"${name}"`).join(', ');
  throw new Qcow2Error(
    'INVALID_ARGUMENT',
    `${operation} would change what snapshot${names.length === 1 ? '' : 's'} ${list} of this disk read${names.length === 1 ? 's' : ''}: ${names.length === 1 ? 'it takes' : 'they take'} data from the backing file there. Delete ${names.length === 1 ? 'it' : 'them'} first, or keep the backing chain as it is`,
  );
}
