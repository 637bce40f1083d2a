/**
 * A replayed journal or log (ext's jbd2, XFS's log) changes what a volume's units (blocks,
 * sectors) hold without the guest ranges showing it: files-diff's shortcut through unchanged
 * folders must count a unit either state replayed as changed.
 */
import type { ChangedBytes } from './filesystem.ts';

/** Whether ascending `units` holds one of [first, first + count): one search, however long the run. */
export function anyReplayed(units: readonly number[], first: number, count: number): boolean {
  let low = 0;
  let high = units.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if ((units[middle] as number) < first) low = middle + 1;
    else high = middle;
  }
  return low < units.length && (units[low] as number) < first + count;
}

/** `changed`, also true for bytes in a unit of `unitBytes` any of `replayed` (ascending unit numbers, one list a state) holds. */
export function withReplayed(changed: ChangedBytes, replayed: readonly (readonly number[])[], unitBytes: number): ChangedBytes {
  const lists = replayed.filter((list) => list.length > 0);
  if (lists.length === 0) return changed;
  return (offset, length) => {
    if (changed(offset, length)) return true;
    const first = Math.floor(offset / unitBytes);
    const count = Math.ceil((offset + length) / unitBytes) - first;
    return lists.some((list) => anyReplayed(list, first, count));
  };
}
