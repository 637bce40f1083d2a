/**
 * Every path the page hands main is checked here before anything touches it. The page is treated
 * as untrusted (a compromised renderer must not turn Cowbell into a file browser or shredder): a
 * path is an existing regular file to read or change, or a new file in an existing folder.
 */
import { lstat, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute, sep } from 'node:path';
import type { JobKind } from '../shared/ipc/contract.ts';
import type { ErrorCode } from '../shared/qcow2/errors-codes.ts';
import { Qcow2Error, toQcow2Error } from '../shared/qcow2/errors.ts';
import { RequestError } from './errors.ts';

const MAX_PATH_LENGTH = 4096;

/** What a job does with its path: read or change an existing image, or make a new one. */
export type PathRole = 'existing-file' | 'new-file';

/** An argument naming another file the job reads: it must exist and be a regular file. */
interface FileArgument {
  name: string;
  /** The code when it is missing, so the page can say which file is gone. */
  missingCode: ErrorCode;
}

interface JobPaths {
  target: PathRole;
  fileArguments?: readonly FileArgument[];
  /** Arguments naming a file the job makes: each must be a new file, as a `new-file` target. */
  newFileArguments?: readonly string[];
}

// A Record over the contract's job kinds: a new kind does not compile until its paths are decided here.
export const JOB_PATHS: Readonly<Record<JobKind, JobPaths>> = {
  'image.info': { target: 'existing-file' },
  'image.map': { target: 'existing-file' },
  'image.create': { target: 'new-file', fileArguments: [{ name: 'backingFile', missingCode: 'BACKING_NOT_FOUND' }] },
  'image.usage': { target: 'existing-file' },
  'image.diff': { target: 'existing-file' },
  'image.check': { target: 'existing-file' },
  'image.repair': { target: 'existing-file' },
  'snapshot.tree': { target: 'existing-file' },
  'snapshot.outline': { target: 'existing-file' },
  'snapshot.create': { target: 'existing-file' },
  'snapshot.apply': { target: 'existing-file' },
  'snapshot.delete': { target: 'existing-file' },
  'snapshot.rename': { target: 'existing-file' },
  'snapshot.note': { target: 'existing-file' },
  'image.rewritePreview': { target: 'existing-file' },
  'image.compress': { target: 'existing-file' },
  'image.compact': { target: 'existing-file' },
  'image.encrypt': { target: 'existing-file' },
  'image.decrypt': { target: 'existing-file' },
  'image.passphrase': { target: 'existing-file' },
  'snapshot.export': { target: 'existing-file', newFileArguments: ['target'] },
  'image.rescue': { target: 'existing-file', newFileArguments: ['target'] },
  'chain.read': { target: 'existing-file' },
  'chain.commit': { target: 'existing-file' },
  'chain.rebase': { target: 'existing-file', fileArguments: [{ name: 'backingFile', missingCode: 'BACKING_NOT_FOUND' }] },
  'image.resizePreview': { target: 'existing-file' },
  'image.resize': { target: 'existing-file' },
  'files.list': { target: 'existing-file' },
  'files.diff': { target: 'existing-file' },
  'files.copyOut': { target: 'existing-file', newFileArguments: ['target'] },
};

/** The checks that need no file system: a bounded string, no NUL byte, absolute on this platform. */
export function requireWellFormedPath(path: unknown, what = 'path'): string {
  if (typeof path !== 'string' || path.length === 0) throw new RequestError(`The ${what} is empty`);
  if (path.length > MAX_PATH_LENGTH) throw new RequestError(`The ${what} is longer than ${MAX_PATH_LENGTH} characters`);
  if (path.includes('\0')) throw new RequestError(`The ${what} contains a NUL byte`);
  if (!isAbsolute(path)) throw new RequestError(`The ${what} must be absolute: ${path}`);
  return path;
}

/** A prefix being typed may be partial or relative (it then completes to nothing), but never holds a NUL. */
export function requireWellFormedPrefix(prefix: string): string {
  if (prefix.length > MAX_PATH_LENGTH) throw new RequestError(`The path is longer than ${MAX_PATH_LENGTH} characters`);
  if (prefix.includes('\0')) throw new RequestError('The path contains a NUL byte');
  return prefix;
}

/** An existing regular file (a symlink to one counts): what every job on an existing image needs. */
export async function requireExistingFile(path: unknown): Promise<string> {
  const checked = requireWellFormedPath(path);
  let info;
  try {
    info = await stat(checked);
  } catch (error) {
    throw fileSystemError(error, checked);
  }
  if (info.isDirectory()) throw new Qcow2Error('NOT_A_FILE', `${checked}: is a folder, not a disk image`);
  if (!info.isFile()) throw new Qcow2Error('NOT_A_FILE', `${checked}: not a regular file`);
  return checked;
}

/** A file that does not exist yet (not even as a dangling link), named inside an existing folder. */
export async function requireNewFile(path: unknown): Promise<string> {
  const checked = requireWellFormedPath(path);
  const name = basename(checked);
  if (checked.endsWith('/') || checked.endsWith(sep) || name === '' || name === '.' || name === '..') {
    throw new RequestError(`${checked} names a folder, not a new file`);
  }
  try {
    await lstat(checked);
    throw new Qcow2Error('INVALID_ARGUMENT', `${checked} already exists; choose another name`);
  } catch (error) {
    if (error instanceof Qcow2Error) throw error;
    // ENOTDIR: a file stands where the folder should be, which the folder check below reports.
    const code = (error as { code?: unknown }).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw toQcow2Error(error, checked);
  }
  const folder = dirname(checked);
  let folderInfo;
  try {
    folderInfo = await stat(folder);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new Qcow2Error('NOT_FOUND', `The folder ${folder} does not exist`, { cause: error });
    throw toQcow2Error(error, folder);
  }
  if (!folderInfo.isDirectory()) throw new Qcow2Error('INVALID_ARGUMENT', `${folder} is not a folder`);
  return checked;
}

/** A job's target path and any file its arguments name, checked for the job's kind. */
export async function requireJobPaths(kind: string, path: unknown, args: unknown): Promise<void> {
  const paths = Object.hasOwn(JOB_PATHS, kind) ? JOB_PATHS[kind as JobKind] : undefined;
  if (paths === undefined) throw new RequestError(`There is no job named ${JSON.stringify(kind)}`);
  if (paths.target === 'new-file') await requireNewFile(path);
  else await requireExistingFile(path);
  if (typeof args !== 'object' || args === null) return;
  for (const name of paths.newFileArguments ?? []) {
    const value = (args as Record<string, unknown>)[name];
    if (value !== undefined) await requireNewFile(value);
  }
  for (const argument of paths.fileArguments ?? []) {
    const value = (args as Record<string, unknown>)[argument.name];
    if (value === undefined) continue;
    try {
      await requireExistingFile(value);
    } catch (error) {
      if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') {
        throw new Qcow2Error(argument.missingCode, `${String(value)}: no such file`, { cause: error });
      }
      throw error;
    }
  }
}

/** Node's errors as engine codes; a path running through a file (ENOTDIR) simply does not exist. */
function fileSystemError(error: unknown, path: string): Qcow2Error {
  if ((error as { code?: unknown }).code === 'ENOTDIR') return new Qcow2Error('NOT_FOUND', `${path}: no such file`, { cause: error });
  return toQcow2Error(error, path);
}
