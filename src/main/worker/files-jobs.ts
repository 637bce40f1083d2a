/**
 * The jobs that look inside a state's files (issue 22): list one folder, compare two states' files,
 * restore a file or folder to a new place on the host. Each opens the states it needs, read-only,
 * and closes them before it returns.
 */
import type { JobArgs, JobResult } from '../../shared/ipc/contract.ts';
import { diffStatesByName } from '../../shared/qcow2/files/files-diff.ts';
import { restoreFromState } from '../../shared/qcow2/files/restore.ts';
import { CURRENT_STATE, type StateFiles } from '../../shared/qcow2/files/state-files.ts';
import type { SnapshotRef } from '../../shared/qcow2/image/image.ts';
import type { VolumePassphrase } from '../../shared/qcow2/files/encrypted-volumes.ts';
import type { StateFilesOptions } from '../../shared/qcow2/files/state-files.ts';
import type { JobContext } from '../../shared/qcow2/job-context.ts';
import { readDiff } from '../../shared/qcow2/snapshots/operations.ts';
import { withSecretBytesAsync } from './secret-bytes.ts';


/** Opens one state ("current", or a snapshot) of the disk at imagePath: files/state-files.ts openStateFiles. */
export type OpenStateFiles = (imagePath: string, state: SnapshotRef, options?: StateFilesOptions) => Promise<StateFiles>;

/**
 * A state as the app names it: "current", or a snapshot's id (the tree's node ids), looked up as
 * an id only — never as a name, which another snapshot may bear (names repeat, and may look like ids)
 * — with the creation time the tree showed: a snapshot deleted and made again since may bear the
 * same id (QEMU gives the lowest free one), and reading it instead would restore another state's
 * file under the name the user chose.
 */
function stateRef(state: string, date: string | undefined): SnapshotRef {
  if (state === CURRENT_STATE) return CURRENT_STATE;
  return date === undefined ? { id: state } : { id: state, date };
}

type FilesJob<K extends 'files.list' | 'files.diff' | 'files.copyOut'> = (path: string, args: JobArgs<K>, context: JobContext) => Promise<JobResult<K>>;

export interface FilesJobs {
  'files.list': FilesJob<'files.list'>;
  'files.diff': FilesJob<'files.diff'>;
  'files.copyOut': FilesJob<'files.copyOut'>;
}

/** A job's secrets as the engine takes them: the disk's passphrase, and those of volumes inside it. */
interface JobSecrets {
  passphrase: Uint8Array | undefined;
  volumes: StateFilesOptions['volumes'];
}

type SecretArgs = { passphrase?: string | undefined; volumePassphrases?: { uuid: string; passphrase: string }[] | undefined };

/** Runs `work` with byte copies of the job's passphrases, zeroed when it settles (secret-bytes.ts). */
function withJobSecrets<R>(args: SecretArgs, context: JobContext, work: (secrets: JobSecrets) => Promise<R>): Promise<R> {
  const volumes = args.volumePassphrases ?? [];
  return withSecretBytesAsync([args.passphrase, ...volumes.map((entry) => entry.passphrase)], ([passphrase, ...volumeSecrets]) => {
    const passphrases: VolumePassphrase[] = volumes.map((entry, index) => ({ uuid: entry.uuid, passphrase: volumeSecrets[index] as Uint8Array }));
    return work({ passphrase, volumes: { passphrases, job: context } });
  });
}

async function withState<R>(open: OpenStateFiles, imagePath: string, state: string, date: string | undefined, secrets: JobSecrets, work: (files: StateFiles) => Promise<R>, { guardCurrent = false } = {}): Promise<R> {
  // A restore from the current state keeps writers out until it is done: a VM starting meanwhile
  // would tear the copy; one writing now is refused (the app has no -U: 'changing' offers none).
  const guarded = guardCurrent && state === CURRENT_STATE;
  const files = await open(imagePath, stateRef(state, date), { passphrase: secrets.passphrase, volumes: secrets.volumes, ...(guarded ? { guard: true, refuseInUse: 'changing' as const } : {}) });
  try {
    return await work(files);
  } finally {
    await files.close();
  }
}

export function createFilesJobs(open: OpenStateFiles): FilesJobs {
  return {
    'files.list': (imagePath, args, context) =>
      withJobSecrets(args, context, (secrets) =>
        withState(open, imagePath, args.state, args.stateDate, secrets, async (files) => ({
          state: args.state,
          path: args.path,
          volumes: [...files.volumes],
          entries: await files.list(args.path),
        })),
      ),
    'files.diff': (imagePath, args, context) =>
      withJobSecrets(args, context, (secrets) =>
        diffStatesByName(
          (state) => open(imagePath, stateRef(state, state === args.from ? args.fromDate : args.toDate), { passphrase: secrets.passphrase, volumes: secrets.volumes }),
          args.from,
          args.to,
          () => readDiff(imagePath, stateRef(args.from, args.fromDate), stateRef(args.to, args.toDate), context).ranges,
          context,
        ),
      ),
    'files.copyOut': (imagePath, args, context) =>
      withJobSecrets(args, context, (secrets) => withState(open, imagePath, args.state, args.stateDate, secrets, (files) => restoreFromState(files, args.path, args.target, context), { guardCurrent: true })),
  };
}

