/**
 * What the guest sees in an image — the current disk and every snapshot, by id and name — and
 * the per-operation contracts that say which states a crash may leave.
 */
import { readCowbellRecord } from '../../../src/shared/qcow2/format/cowbell-record.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { firstDifference } from '../../helpers/qemu.ts';

export interface SnapshotState {
  id: string;
  name: string;
  /** The note in Cowbell's record ('' for none). */
  note: string;
  data: Uint8Array;
}

export interface GuestState {
  current: Uint8Array;
  snapshots: SnapshotState[];
}

/**
 * What a crash in the middle of an operation may leave:
 * - `all-or-nothing`: the whole state (current disk, every snapshot's data, ids, names and notes) is the
 *   one before the operation or the one after it, never a mix (snapshot operations, repair);
 * - `per-cluster`: the snapshots are untouched, and each guest cluster of the current disk (each
 *   subcluster, in an image with extended L2 entries, whose allocation bits change one by one)
 *   reads as before or as after, independently of the others (guest writes, zero writes,
 *   discards). Where the disk itself tears a write into 512-byte sectors, an in-place write tears
 *   the same way: then each sector reads as before or after — a raw disk's own promise for writes
 *   not yet flushed, and all a guest may assume.
 */
export type Contract = 'all-or-nothing' | 'per-cluster';

/** Reads everything the guest can see, through the engine (read-only; a dirty image opens read-only too); an encrypted image with `passphrase`. */
export function readGuestState(file: BlockFile, passphrase?: string): GuestState {
  const image = Qcow2Image.openFile(file, { readOnly: true, passphrase });
  try {
    const current = image.read(0, image.virtualSize);
    const snapshots = image.snapshots.map((entry) => {
      const reader = image.snapshotReader(entry);
      const data = new Uint8Array(reader.virtualSize);
      reader.readInto(data, 0);
      return { id: entry.id, name: entry.name, note: readCowbellRecord(entry)?.note ?? '', data };
    });
    return { current, snapshots };
  } finally {
    image.close();
  }
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return firstDifference(a, b) === -1;
}

function snapshotsEqual(a: SnapshotState[], b: SnapshotState[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((snapshot, index) => {
    const other = b[index];
    return other !== undefined && snapshot.id === other.id && snapshot.name === other.name && snapshot.note === other.note && bytesEqual(snapshot.data, other.data);
  });
}

export function statesEqual(a: GuestState, b: GuestState): boolean {
  return bytesEqual(a.current, b.current) && snapshotsEqual(a.snapshots, b.snapshots);
}

function describeState(state: GuestState): string {
  return `${state.current.length}-byte disk, snapshots [${state.snapshots.map((snapshot) => `${snapshot.id}:${snapshot.name}`).join(', ')}]`;
}

/** Why `observed` breaks the contract, or null if it keeps it. */
export function contractViolation(contract: Contract, granuleBytes: number, before: GuestState, after: GuestState, observed: GuestState): string | null {
  if (contract === 'all-or-nothing') {
    if (statesEqual(observed, before) || statesEqual(observed, after)) return null;
    const currentAs = bytesEqual(observed.current, before.current) ? 'before' : bytesEqual(observed.current, after.current) ? 'after' : 'neither';
    const snapshotsAs = snapshotsEqual(observed.snapshots, before.snapshots) ? 'before' : snapshotsEqual(observed.snapshots, after.snapshots) ? 'after' : 'neither';
    return `a mix: current disk is ${currentAs}, snapshots are ${snapshotsAs} (${describeState(observed)})`;
  }
  if (!snapshotsEqual(observed.snapshots, before.snapshots)) return `snapshots changed: ${describeState(observed)}`;
  if (observed.current.length !== before.current.length) return `disk size changed to ${observed.current.length}`;
  for (let start = 0; start < observed.current.length; start += granuleBytes) {
    const end = Math.min(start + granuleBytes, observed.current.length);
    const seen = observed.current.subarray(start, end);
    if (!bytesEqual(seen, before.current.subarray(start, end)) && !bytesEqual(seen, after.current.subarray(start, end))) {
      return `guest bytes ${start}+${granuleBytes} are neither before nor after (first odd byte at ${start + Math.max(0, firstDifference(seen, after.current.subarray(start, end)))})`;
    }
  }
  return null;
}
