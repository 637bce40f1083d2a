/**
 * How files-diff's callers (the CLI, the app's worker) open one state's files. Stands in for
 * files-core's openStateFiles until that is merged: until then no filesystem can be read.
 */
import { Qcow2Error } from '../errors.ts';
import type { StateFiles } from './state-files.ts';

export interface OpenStateOptions {
  passphrase?: Uint8Array;
  /** Fail while another program writes the disk (the CLI without -U). */
  refuseInUse?: boolean;
}

export type OpenStateFiles = (imagePath: string, state: string, options?: OpenStateOptions) => Promise<StateFiles>;

export const openStateFiles: OpenStateFiles = async () => {
  throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', 'This build reads no guest filesystems yet');
};
