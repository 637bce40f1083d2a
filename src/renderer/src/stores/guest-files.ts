/**
 * The files inside a disk's states (issue 22), as the Files panel browses them: for each open disk,
 * the state shown ("current" or a snapshot's id) and the folder open in it, read one folder at a
 * time by a background job; plus compare (files-diff) and restore (copy out) as jobs in the panel.
 * An encrypted disk is unlocked once for browsing: its passphrase stays in this module's memory
 * only (never in reactive state, never stored) until the disk is closed or the passphrase fails.
 */
import { defineStore } from 'pinia';
import { reactive } from 'vue';
import type { FilesCopyOutResult, GuestFileEntry, GuestFilesDiff, GuestFolderListing, GuestVolumeInfo, JobArgs } from '../../../shared/ipc/contract.ts';
import { formatBytes } from '../../../shared/format-units.ts';
import { toApiError, type ApiErrorCode } from '../lib/api-error.ts';
import { baseName } from '../lib/paths.ts';
import { useJobsStore } from './jobs.ts';

export interface FilesBrowse {
  path: string;
  /** "current" or a snapshot's id. */
  state: string;
  /** The snapshot's creation time as the tree showed it (the engine refuses another snapshot that took its id). */
  stateDate: string | undefined;
  /** The folder shown, inside the state ("/" is the root). */
  folder: string;
  status: 'idle' | 'loading' | 'ready' | 'error' | 'locked';
  entries: GuestFileEntry[];
  volumes: GuestVolumeInfo[];
  error: { code: ApiErrorCode; message: string } | null;
}

const UNLOCK_CODES: readonly ApiErrorCode[] = ['LOCKED', 'BAD_PASSPHRASE'];

export function parentFolder(folder: string): string {
  const cut = folder.lastIndexOf('/');
  return cut <= 0 ? '/' : folder.slice(0, cut);
}

export function childPath(folder: string, name: string): string {
  return folder === '/' ? `/${name}` : `${folder}/${name}`;
}

export const useGuestFilesStore = defineStore('guest-files', () => {
  const browses = reactive(new Map<string, FilesBrowse>());
  /** Passphrases given to browse encrypted disks, by disk path: plain (not reactive), never persisted. */
  const passphrases = new Map<string, string>();
  /** The latest listing asked for, per disk: an older one that ends later is dropped. */
  const generations = new Map<string, number>();

  function browseOf(path: string): FilesBrowse {
    let browse = browses.get(path);
    if (!browse) {
      browses.set(path, { path, state: 'current', stateDate: undefined, folder: '/', status: 'idle', entries: [], volumes: [], error: null });
      browse = browses.get(path) as FilesBrowse;
    }
    return browse;
  }

  function withPassphrase<T extends object>(path: string, args: T): T & { passphrase?: string } {
    const passphrase = passphrases.get(path);
    return passphrase === undefined ? args : { ...args, passphrase };
  }

  /**
   * Shows `folder` of `state` (taken at `stateDate`, as the tree shows it); a later call wins over
   * one still reading. `typed`: the passphrase was just given (unlock).
   */
  async function open(path: string, state: string, stateDate: string | undefined, folder: string, typed = false): Promise<void> {
    const browse = browseOf(path);
    const mine = (generations.get(path) ?? 0) + 1;
    generations.set(path, mine);
    browse.state = state;
    browse.stateDate = stateDate;
    browse.folder = folder;
    browse.status = 'loading';
    browse.error = null;
    try {
      const listing: GuestFolderListing = await useJobsStore().run('files.list', path, withPassphrase(path, { state, ...(stateDate === undefined ? {} : { stateDate }), path: folder }), {
        title: `List ${folder} of ${baseName(path)}`,
        background: true,
      });
      if (mine !== generations.get(path)) return;
      browse.entries = listing.entries;
      browse.volumes = listing.volumes;
      browse.status = 'ready';
    } catch (failure) {
      if (mine !== generations.get(path)) return;
      const error = toApiError(failure);
      browse.entries = [];
      browse.error = { code: error.code, message: error.message };
      if (UNLOCK_CODES.includes(error.code)) {
        // A passphrase kept from earlier that no longer opens the disk (changed meanwhile) was not typed now: ask, without saying it was wrong.
        if (error.code === 'BAD_PASSPHRASE' && !typed) browse.error = { code: 'LOCKED', message: 'The passphrase given earlier no longer opens this disk' };
        passphrases.delete(path);
        browse.status = 'locked';
      } else browse.status = 'error';
    }
  }

  function unlock(path: string, passphrase: string): Promise<void> {
    passphrases.set(path, passphrase);
    const browse = browseOf(path);
    return open(path, browse.state, browse.stateDate, browse.folder, true);
  }

  /** The disk was closed: its browse and any passphrase given for it go. */
  function forget(path: string): void {
    browses.delete(path);
    passphrases.delete(path);
    generations.delete(path);
  }

  function compare(path: string, args: { from: string; fromDate?: string; to: string; toDate?: string; fromName: string; toName: string }, onStarted?: (jobId: string) => void): Promise<GuestFilesDiff> {
    const states = { from: args.from, to: args.to, ...(args.fromDate === undefined ? {} : { fromDate: args.fromDate }), ...(args.toDate === undefined ? {} : { toDate: args.toDate }) };
    return useJobsStore().run('files.diff', path, withPassphrase(path, states), {
      title: `Compare the files of “${args.fromName}” and “${args.toName}” in ${baseName(path)}`,
      describe: (result) => `${result.differences.length} difference${result.differences.length === 1 ? '' : 's'}, ${formatBytes(result.bytes)} involved.`,
      onStarted,
      answeredCodes: UNLOCK_CODES,
    });
  }

  function restore(path: string, args: JobArgs<'files.copyOut'>, onStarted?: (jobId: string) => void): Promise<FilesCopyOutResult> {
    return useJobsStore().run('files.copyOut', path, args.passphrase === undefined ? withPassphrase(path, args) : args, {
      title: `Restore ${args.path} to ${baseName(args.target)}`,
      describe: (result) => `${formatBytes(result.bytes)} copied to ${result.target}.`,
      onStarted,
      answeredCodes: UNLOCK_CODES,
    });
  }

  function hasPassphrase(path: string): boolean {
    return passphrases.has(path);
  }

  return { browses, browseOf, open, unlock, forget, compare, restore, hasPassphrase };
});
