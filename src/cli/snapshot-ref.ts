/**
 * A snapshot as the command line names it: a bare NAME_OR_ID, or, as qemu-img's `-l` takes it,
 * `snapshot.name=NAME` or `snapshot.id=ID`, each looked up as that alone. The explicit forms are
 * the way to a snapshot whose name is another's id, or one of several that share a name.
 */
import type { SnapshotRef } from '../shared/qcow2/image/image.ts';
import { UsageError } from './command.ts';

const EXPLICIT = /^snapshot\.(name|id)=(.*)$/s;

export function snapshotRefOf(text: string): SnapshotRef {
  const match = EXPLICIT.exec(text);
  if (match === null) return text;
  const value = match[2] ?? '';
  if (value === '') throw new UsageError(`${text}: give a snapshot ${match[1] ?? 'name'} after '='`);
  return match[1] === 'id' ? { id: value, typed: text } : { name: value, typed: text };
}
