/**
 * Path-level engine operations: open the image with the access the operation needs, run it,
 * flush and close. Workers and the CLI call these; a failure closes the image too.
 */
import { diffStates } from './diff.ts';
import { defaultOpenFile, Qcow2Image, type OpenImageOptions, type SnapshotRef } from '../image/image.ts';
import { refuseIfWrittenElsewhere } from '../io/image-lock.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { DiffResult, SnapshotTree, UsageReport } from '../model.ts';
import { snapshotOutline } from './snapshot-outline.ts';
import { snapshotTree } from './snapshot-tree.ts';
import { applySnapshot, createSnapshot, deleteSnapshot, renameSnapshot, setSnapshotNote } from './snapshots.ts';
import { imageUsage } from './usage.ts';

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

export function revertToSnapshot(filePath: string, name: SnapshotRef, job: JobContext = silentJob): void {
  withImage(filePath, 'write', (image) => applySnapshot(image, name, job));
}

export function removeSnapshot(filePath: string, name: SnapshotRef, job: JobContext = silentJob): void {
  withImage(filePath, 'write', (image) => deleteSnapshot(image, name, job));
}

export function changeSnapshotName(filePath: string, name: SnapshotRef, newName: string): void {
  withImage(filePath, 'write', (image) => renameSnapshot(image, name, newName));
}

/** Sets a snapshot's note ('' clears it). */
export function changeSnapshotNote(filePath: string, name: SnapshotRef, note: string): void {
  withImage(filePath, 'write', (image) => setSnapshotNote(image, name, note));
}
