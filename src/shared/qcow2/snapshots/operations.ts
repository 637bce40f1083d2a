/**
 * Path-level engine operations: open the image with the access the operation needs, run it,
 * flush and close. Workers and the CLI call these; a failure closes the image too.
 */
import { diffStates } from './diff.ts';
import { defaultOpenFile, findSnapshot, Qcow2Image, type OpenImageOptions, type SnapshotRef } from '../image/image.ts';
import { refuseIfWrittenElsewhere } from '../io/image-lock.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { DiffResult, SnapshotTree, UsageReport } from '../model.ts';
import { snapshotOutline } from './snapshot-outline.ts';
import { snapshotTree } from './snapshot-tree.ts';
import { applySnapshot, createSnapshot, deleteSnapshot, renameSnapshot, setSnapshotNote } from './snapshots.ts';
import { currentUnsavedBytes, imageUsage } from './usage.ts';
import { Qcow2Error } from '../errors.ts';

export function withImage<T>(filePath: string, access: 'read' | 'write', work: (image: Qcow2Image) => T, options: OpenImageOptions = {}): T {
  const image = Qcow2Image.open(filePath, { ...options, readOnly: access === 'read', openBacking: options.openBacking ?? false });
  let result: T;
  try {
    result = work(image);
    if (access === 'write') image.flush();
  } catch (error) {
    try {
      image.closeWithoutWriting();
    } catch {
      // The operation's error is the one to report.
    }
    throw error;
  }
  image.close();
  return result;
}

/** How a read opens the image: `refuseInUse` fails while another program writes it (the CLI without -U). */
export type ReadOptions = Pick<OpenImageOptions, 'refuseInUse'>;

export function readSnapshotTree(filePath: string, job: JobContext = silentJob, options: ReadOptions = {}): SnapshotTree {
  return withImage(filePath, 'read', (image) => snapshotTree(image, job), options);
}

/** The quick tree (snapshot-outline.ts): the header and snapshot table only, no space figures. */
export function readSnapshotOutline(filePath: string, options: ReadOptions = {}): SnapshotTree {
  const file = defaultOpenFile(filePath, true);
  try {
    refuseIfWrittenElsewhere(file, options.refuseInUse);
    return snapshotOutline(file);
  } finally {
    file.close();
  }
}

export function readUsage(filePath: string, job: JobContext = silentJob, options: ReadOptions = {}): UsageReport {
  return withImage(filePath, 'read', (image) => imageUsage(image, job), options);
}

export function readDiff(filePath: string, from: SnapshotRef, to: SnapshotRef, job: JobContext = silentJob, options: ReadOptions = {}): DiffResult {
  return withImage(filePath, 'read', (image) => diffStates(image, from, to, job), options);
}

export function takeSnapshot(filePath: string, name: string, job: JobContext = silentJob, note?: string): { id: string; name: string } {
  return withImage(filePath, 'write', (image) => {
    const entry = createSnapshot(image, { name, note }, job);
    return { id: entry.id, name: entry.name };
  });
}

/** The snapshot an operation acted on, as it was named when it was found (the ref may be an id or a selector). */
export interface SnapshotActedOn {
  id: string;
  name: string;
}

function actedOn(image: Qcow2Image, ref: SnapshotRef): SnapshotActedOn {
  const entry = findSnapshot(image, ref);
  return { id: entry.id, name: entry.name };
}

export interface RevertOptions {
  /**
   * The most bytes of the current state in no snapshot the caller agreed to discard (what a dialog
   * showed). More is refused (UNSAVED_DATA), nothing changed: another program wrote since.
   */
  discardUpTo?: number;
}

export function revertToSnapshot(filePath: string, name: SnapshotRef, job: JobContext = silentJob, options: RevertOptions = {}): SnapshotActedOn {
  return withImage(filePath, 'write', (image) => {
    const target = actedOn(image, name);
    if (options.discardUpTo !== undefined) {
      const unsaved = currentUnsavedBytes(image, job);
      if (unsaved > options.discardUpTo) {
        throw new Qcow2Error('UNSAVED_DATA', `The current state now holds ${unsaved} bytes that are in no snapshot, more than the ${options.discardUpTo} agreed to be discarded (another program wrote to the disk since); nothing was changed, look again`);
      }
    }
    applySnapshot(image, name, job);
    return target;
  });
}

export function removeSnapshot(filePath: string, name: SnapshotRef, job: JobContext = silentJob): SnapshotActedOn {
  return withImage(filePath, 'write', (image) => {
    const target = actedOn(image, name);
    deleteSnapshot(image, name, job);
    return target;
  });
}

export function changeSnapshotName(filePath: string, name: SnapshotRef, newName: string): SnapshotActedOn {
  return withImage(filePath, 'write', (image) => {
    const target = actedOn(image, name);
    renameSnapshot(image, name, newName);
    return target;
  });
}

/** Sets a snapshot's note ('' clears it). */
export function changeSnapshotNote(filePath: string, name: SnapshotRef, note: string): SnapshotActedOn {
  return withImage(filePath, 'write', (image) => {
    const target = actedOn(image, name);
    setSnapshotNote(image, name, note);
    return target;
  });
}
