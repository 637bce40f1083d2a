/**
 * What the user can do to a disk's snapshots, each as a job in the jobs panel: take, revert (with
 * an optional snapshot of the current state first), delete, rename, set a note. After each the tree and the
 * disk's info are read again; a refusal because another program holds the disk marks it in use.
 */
import { shownName } from '../lib/shown-name.ts';
import type { JobArgs, JobKind, JobResult } from '../../../shared/ipc/contract.ts';
import { BITMAPS_READ_ONLY_REASON, type SnapshotNode } from '../../../shared/qcow2/model.ts';
import { formatBytes } from '../../../shared/format-units.ts';
import { errorMessage } from '../error-messages.ts';
import { toApiError } from '../lib/api-error.ts';
import { baseName } from '../lib/paths.ts';
import { useAppStore } from './app.ts';
import { useDiskDataStore } from './disk-data.ts';
import { useJobsStore, type RunOptions } from './jobs.ts';
import { useLibraryStore } from './library.ts';

/** Why nothing can be changed while the link to Cowbell is gone. */
export const CONNECTION_LOST = 'Connection to Cowbell lost: start it again, then open the address it prints.';

export function useSnapshotActions() {
  const jobs = useJobsStore();
  const diskData = useDiskDataStore();
  const library = useLibraryStore();

  /**
   * Why writes to this disk are refused right now, in words; null when they are allowed.
   * `rewrite`: a new file replaces the disk (compact and the like), which may leave dirty bitmaps behind — the only thing that makes such a disk read-only.
   */
  function writeBlockedReason(path: string, { rewrite = false } = {}): string | null {
    // Without main nothing can be changed: said on every action, which opened and then failed (UI audit).
    if (useAppStore().connectionState === 'lost') return CONNECTION_LOST;
    const info = library.disks.find((disk) => disk.path === path)?.info;
    const readOnly = info?.['read-only-reason'];
    if (readOnly && !(rewrite && readOnly === BITMAPS_READ_ONLY_REASON)) return `Read-only: ${readOnly}`;
    const inUse = diskData.disks.get(path)?.inUseReason;
    if (inUse) return inUse;
    return null;
  }

  /**
   * A job that changes the disk: titled with the disk's name, and the disk read again after it,
   * however it ended. A dialog that shows the job's own result need not wait for that re-read.
   */
  async function write<K extends JobKind>(kind: K, path: string, args: JobArgs<K>, options: RunOptions<K>, { waitForReread = true } = {}): Promise<JobResult<K>> {
    try {
      return await jobs.run(kind, path, args, { ...options, title: `${options.title} — ${baseName(path)}` });
    } catch (error) {
      const apiError = toApiError(error);
      if (apiError.code === 'IN_USE') diskData.markInUse(path, `${errorMessage('IN_USE').title} ${apiError.message}`);
      throw apiError;
    } finally {
      const reread = Promise.all([library.reload(path), diskData.load(path)]);
      if (waitForReread) await reread;
    }
  }

  async function take(path: string, name: string, note = ''): Promise<{ id: string; name: string }> {
    const result = await write('snapshot.create', path, note === '' ? { name } : { name, note }, {
      title: `Take snapshot “${shownName(name)}”`,
      describe: (created) => `Took snapshot “${shownName(created.name)}”.`,
    });
    diskData.select(path, result.id);
    return result;
  }

  /**
   * `discardUpTo`: without a snapshot first, the bytes in no snapshot the dialog showed the revert
   * discards — more, written since, is refused rather than lost unseen.
   */
  async function revert(path: string, snapshot: SnapshotNode, firstTakeName: string | null, discardUpTo?: number): Promise<void> {
    if (firstTakeName !== null) await take(path, firstTakeName);
    const bound = firstTakeName === null && discardUpTo !== undefined ? { discardUpTo } : {};
    await write('snapshot.apply', path, { name: snapshot.name, id: snapshot.id, date: snapshot.date, ...bound }, {
      title: `Revert to “${shownName(snapshot.name)}”`,
      describe: () => `The disk is now as it was at “${shownName(snapshot.name)}”.`,
    });
  }

  async function remove(path: string, snapshot: SnapshotNode): Promise<void> {
    await write('snapshot.delete', path, { name: snapshot.name, id: snapshot.id, date: snapshot.date }, {
      title: `Delete snapshot “${shownName(snapshot.name)}”`,
      describe: () => (snapshot.exclusiveBytes === null ? `Deleted “${shownName(snapshot.name)}”.` : `Deleted “${shownName(snapshot.name)}”, freeing ${formatBytes(snapshot.exclusiveBytes)}.`),
    });
  }

  async function rename(path: string, snapshot: SnapshotNode, newName: string): Promise<void> {
    await write('snapshot.rename', path, { name: snapshot.name, id: snapshot.id, date: snapshot.date, newName }, {
      title: `Rename “${shownName(snapshot.name)}” to “${shownName(newName)}”`,
      describe: () => `Renamed “${shownName(snapshot.name)}” to “${shownName(newName)}”.`,
    });
  }

  async function setNote(path: string, snapshot: SnapshotNode, note: string): Promise<void> {
    await write('snapshot.note', path, { name: snapshot.name, id: snapshot.id, date: snapshot.date, note }, {
      title: note === '' ? `Clear the note of “${shownName(snapshot.name)}”` : `Set the note of “${shownName(snapshot.name)}”`,
      describe: () => (note === '' ? `Cleared the note of “${shownName(snapshot.name)}”.` : `Set the note of “${shownName(snapshot.name)}”.`),
    });
  }

  return { writeBlockedReason, write, take, revert, remove, rename, setNote };
}
