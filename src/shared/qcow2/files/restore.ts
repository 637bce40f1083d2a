/**
 * The app's Restore: one file or folder of a state copied out to a new host path the user named,
 * all or nothing. copy-out.ts writes each file under a temporary name; here the whole copy is first
 * made under a hidden temporary name beside the target and takes the target's name only once
 * complete, so a cancelled or failed folder leaves nothing behind either; nothing already there is
 * ever replaced.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { nodeFileSystem, temporaryPathFor } from '../io/atomic-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { copyOut, type CopyOutResult } from './copy-out.ts';
import type { StateFiles } from './state-files.ts';

export interface RestoreResult extends CopyOutResult {
  kind: 'file' | 'directory' | 'symlink';
}

export async function restoreFromState(files: StateFiles, guestPath: string, target: string, job: JobContext = silentJob): Promise<RestoreResult> {
  const entry = await files.stat(guestPath);
  if (entry.kind === 'other') throw new Qcow2Error('INVALID_ARGUMENT', `${guestPath} is not a file, folder or link; it cannot be copied out`);
  refuseExisting(target);
  const temporary = temporaryPathFor(target);
  let copied: CopyOutResult;
  try {
    copied = await copyOut(files, guestPath, temporary, { overwrite: false, job, keepsPartial: false });
    job.throwIfCancelled();
    takeName(temporary, target);
  } catch (error) {
    fs.rmSync(temporary, { recursive: true, force: true });
    throw toQcow2Error(error, target);
  }
  nodeFileSystem.syncFolder(path.dirname(target));
  return { ...copied, target, kind: entry.kind };
}

function refuseExisting(target: string): void {
  let exists = true;
  try {
    fs.lstatSync(target);
  } catch {
    exists = false;
  }
  if (exists) throw new Qcow2Error('INVALID_ARGUMENT', `${target} already exists; choose another name`);
}

/** The finished copy takes the target's name; a name that appeared meanwhile is never replaced. */
function takeName(temporary: string, target: string): void {
  if (!fs.lstatSync(temporary).isDirectory()) {
    // A file or symlink: fails with EEXIST if the target exists (a symlink is linked as itself).
    nodeFileSystem.renameNoReplace(temporary, target);
    return;
  }
  refuseExisting(target);
  fs.renameSync(temporary, target);
}

