/** A snapshot note as the dialogs check it: the same bound the contract and the engine keep (UTF-8 bytes). */
import { snapshotNoteBytes } from '../../../shared/ipc/contract.ts';
import { MAX_SNAPSHOT_NOTE_BYTES } from '../../../shared/qcow2/model.ts';

export { MAX_SNAPSHOT_NOTE_BYTES, snapshotNoteBytes };

/** Why a note cannot be kept, or null when it can ('' is no note). */
export function snapshotNoteProblem(note: string): string | null {
  if (note.includes('\0')) return 'A note cannot contain a NUL character.';
  const bytes = snapshotNoteBytes(note.trim());
  if (bytes > MAX_SNAPSHOT_NOTE_BYTES) return `This note is ${bytes} bytes long; a snapshot keeps at most ${MAX_SNAPSHOT_NOTE_BYTES}.`;
  return null;
}
