/**
 * The snapshot tree a rewrite keeps: recorded in each snapshot (format/cowbell-record.ts), guesses
 * marked as guesses — the new layout (zeros dropped, clusters moved) could otherwise make the
 * inference come out otherwise. The "you are here" mark names the current L1 table, which the
 * rewrite moved; it also carries that table's checksum, so it holds until the table changes.
 * Each snapshot's note is carried over. Entries whose extra data holds another program's bytes are
 * left exactly as they are.
 */
import { canHoldCowbellRecord, readCowbellRecord, withCowbellRecord, type CowbellRecord } from '../format/cowbell-record.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import type { ParentChoice } from '../snapshots/snapshot-tree.ts';

/** Each snapshot's parent and the current state's, as the source's tree showed them. */
export interface TreeToKeep {
  parents: Map<string, ParentChoice>;
  current: ParentChoice;
}

export interface ActiveL1Move {
  oldOffset: number;
  newOffset: number;
  newChecksum: number;
}

/** The snapshot entries with the tree recorded. */
export function recordTree(entries: SnapshotEntry[], tree: TreeToKeep, activeL1: ActiveL1Move, diskSize: number): SnapshotEntry[] {
  // A new mark dates from just after the newest snapshot, not from the clock: the same disk rewrites
  // to the same bytes, and no snapshot already there counts as taken after the mark.
  const newest = entries.reduce((date, entry) => (entry.dateSec > date.sec || (entry.dateSec === date.sec && entry.dateNsec > date.nsec) ? { sec: entry.dateSec, nsec: entry.dateNsec } : date), { sec: 0, nsec: 0 });
  const since = newest.nsec >= 999_999_999 ? { sec: newest.sec + 1, nsec: 0 } : { sec: newest.sec, nsec: newest.nsec + 1 };
  return entries.map((entry) => withTreeRecord(entry, tree, activeL1, diskSize, since));
}

function withTreeRecord(entry: SnapshotEntry, tree: TreeToKeep, activeL1: ActiveL1Move, diskSize: number, since: { sec: number; nsec: number }): SnapshotEntry {
  if (!canHoldCowbellRecord(entry)) return entry;
  const existing = readCowbellRecord(entry);
  const parent = tree.parents.get(entry.id);
  const isCurrent = tree.current.parentId === entry.id;
  const markKept = isCurrent && !tree.current.inferred && existing?.currentParent === true && existing.activeL1Offset === activeL1.oldOffset;
  const record: CowbellRecord = {
    parentKnown: parent !== undefined,
    parentId: parent?.parentId ?? '',
    parentInferred: parent?.inferred ?? false,
    currentParent: isCurrent,
    currentInferred: isCurrent && tree.current.inferred,
    activeL1Offset: isCurrent ? activeL1.newOffset : 0,
    activeL1Checksum: isCurrent ? activeL1.newChecksum : undefined,
    currentSinceSec: !isCurrent ? 0 : markKept ? existing.currentSinceSec : since.sec,
    currentSinceNsec: !isCurrent ? 0 : markKept ? existing.currentSinceNsec : since.nsec,
    note: existing?.note,
  };
  return { ...entry, extraData: withCowbellRecord(entry, record, diskSize), vmStateSizeLarge: entry.vmStateSizeLarge ?? BigInt(entry.vmStateSize32), diskSize: entry.diskSize ?? diskSize };
}
