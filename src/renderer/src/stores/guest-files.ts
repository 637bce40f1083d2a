/**
 * The files inside a disk's states (issue 22), as the Files panel browses them: for each open disk,
 * the state shown ("current" or a snapshot's id) and the folder open in it, read one folder at a
 * time by a background job; plus compare (files-diff) and restore (copy out) as jobs in the panel.
 * An encrypted disk is unlocked once for browsing: its passphrase stays in this module's memory
 * only (never in reactive state, never stored) until the disk is closed or the passphrase fails.
 * So do the passphrases of LUKS volumes inside the guest, by the volume's UUID: every files job of
 * the disk carries them all, so listing, compare and restore read inside the volumes they open.
 */
import { defineStore } from 'pinia';
import { markRaw, reactive } from 'vue';
import { VolumePassphrases, type FilesCopyOutResult, type GuestFileEntry, type GuestFilesDiff, type GuestFolderListing, type GuestVolumeInfo, type JobArgs } from '../../../shared/ipc/contract.ts';
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
/** As many volume passphrases as one job takes (the contract's VolumePassphrases). */
export const MAX_VOLUME_PASSPHRASES = 16;

/** How unlocking an encrypted volume inside the guest ended: opened, or why not (its passphrase is then forgotten). */
/** `code`: an ApiErrorCode for a read that failed (CANCELLED), else the volume's own problemCode (BAD_PASSPHRASE). */
export type VolumeUnlockOutcome = { unlocked: true } | { unlocked: false; problem: string; code: string };

type SecretArgs = { passphrase?: string; volumePassphrases?: { uuid: string; passphrase: string }[] };

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
  /** Passphrases of encrypted volumes inside each disk's guest, by disk path then LUKS UUID: plain, never persisted. */
  const volumePassphrases = new Map<string, Map<string, string>>();
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

  /**
   * The job's arguments with the disk's secrets: its passphrase (unless the job was given one) and
   * those of the volumes inside it, checked against the contract before they go.
   */
  function withSecrets<T extends object>(path: string, args: T): T & SecretArgs {
    const passphrase = 'passphrase' in args && typeof args.passphrase === 'string' ? args.passphrase : passphrases.get(path);
    const volumes = [...(volumePassphrases.get(path) ?? new Map<string, string>())].map(([uuid, given]) => ({ uuid, passphrase: given }));
    if (volumes.length > 0 && !VolumePassphrases.safeParse(volumes).success) throw new Error('The passphrases of the encrypted volumes are not ones a job takes');
    return { ...args, ...(passphrase === undefined ? {} : { passphrase }), ...(volumes.length === 0 ? {} : { volumePassphrases: volumes }) };
  }

  /**
   * Shows `folder` of `state` (taken at `stateDate`, as the tree shows it); a later call wins over
   * one still reading. `typed`: the passphrase was just given (unlock); `onStarted`: told the job's id (to cancel it).
   */
  async function open(path: string, state: string, stateDate: string | undefined, folder: string, typed = false, onStarted?: (jobId: string) => void): Promise<void> {
    const browse = browseOf(path);
    const mine = (generations.get(path) ?? 0) + 1;
    generations.set(path, mine);
    browse.state = state;
    browse.stateDate = stateDate;
    browse.folder = folder;
    browse.status = 'loading';
    browse.error = null;
    try {
      const listing: GuestFolderListing = await useJobsStore().run('files.list', path, withSecrets(path, { state, ...(stateDate === undefined ? {} : { stateDate }), path: folder }), {
        title: `List ${folder} of ${baseName(path)}`,
        background: true,
        onStarted,
      });
      if (mine !== generations.get(path)) return;
      // Replaced whole, never changed in place: no proxy for each of a large folder's entries.
      browse.entries = markRaw(listing.entries);
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

  /**
   * Reads the folder shown again with `passphrase` for the encrypted volume whose LUKS header has
   * `uuid`. Kept only if the volume opens with it; a wrong one (or a cancelled or failed read) is
   * forgotten and the reason returned.
   */
  async function unlockVolume(path: string, uuid: string, passphrase: string, onStarted?: (jobId: string) => void): Promise<VolumeUnlockOutcome> {
    const given = volumePassphrases.get(path) ?? new Map<string, string>();
    if (!given.has(uuid) && given.size >= MAX_VOLUME_PASSPHRASES) return { unlocked: false, problem: `At most ${MAX_VOLUME_PASSPHRASES} encrypted volumes of one disk can be unlocked at a time.`, code: 'INVALID_ARGUMENT' };
    given.set(uuid, passphrase);
    volumePassphrases.set(path, given);
    const browse = browseOf(path);
    await open(path, browse.state, browse.stateDate, browse.folder, false, onStarted);
    const outcome = unlockOutcome(browse, uuid);
    if (!outcome.unlocked) {
      given.delete(uuid);
      // The listing shown was read with the passphrase now forgotten: its volume shows as one read without it would.
      const encryption = browse.volumes.find((volume) => volume.encryption?.uuid === uuid)?.encryption;
      if (encryption?.problemCode === 'BAD_PASSPHRASE') {
        delete encryption.problem;
        delete encryption.problemCode;
      }
      // A read that ended without a listing (cancelled) leaves the panel as it was, without the passphrase.
      if (browse.status !== 'ready') await open(path, browse.state, browse.stateDate, browse.folder);
    }
    return outcome;
  }

  function unlockOutcome(browse: FilesBrowse, uuid: string): VolumeUnlockOutcome {
    if (browse.status !== 'ready') return { unlocked: false, problem: browse.error?.message ?? 'The folder could not be read.', code: browse.error?.code ?? 'INTERNAL' };
    const encryption = browse.volumes.find((volume) => volume.encryption?.uuid === uuid)?.encryption;
    if (encryption === undefined) return { unlocked: false, problem: 'That encrypted volume is not in this state of the disk.', code: 'NOT_FOUND' };
    if (!encryption.unlocked) return { unlocked: false, problem: encryption.problem ?? 'The volume stays locked.', code: encryption.problemCode ?? 'BAD_PASSPHRASE' };
    return { unlocked: true };
  }

  /** Whether a passphrase is kept for the encrypted volume whose LUKS header has `uuid`. */
  function hasVolumePassphrase(path: string, uuid: string): boolean {
    return volumePassphrases.get(path)?.has(uuid) ?? false;
  }

  /** The disk was closed: its browse and any passphrase given for it go. */
  function forget(path: string): void {
    browses.delete(path);
    passphrases.delete(path);
    volumePassphrases.delete(path);
    generations.delete(path);
  }

  function compare(path: string, args: { from: string; fromDate?: string; to: string; toDate?: string; fromName: string; toName: string }, onStarted?: (jobId: string) => void): Promise<GuestFilesDiff> {
    const states = { from: args.from, to: args.to, ...(args.fromDate === undefined ? {} : { fromDate: args.fromDate }), ...(args.toDate === undefined ? {} : { toDate: args.toDate }) };
    return useJobsStore().run('files.diff', path, withSecrets(path, states), {
      title: `Compare the files of “${args.fromName}” and “${args.toName}” in ${baseName(path)}`,
      describe: (result) => `${result.differences.length} difference${result.differences.length === 1 ? '' : 's'}, ${formatBytes(result.bytes)} involved.`,
      onStarted,
      answeredCodes: UNLOCK_CODES,
    });
  }

  function restore(path: string, args: JobArgs<'files.copyOut'>, onStarted?: (jobId: string) => void): Promise<FilesCopyOutResult> {
    return useJobsStore().run('files.copyOut', path, withSecrets(path, args), {
      title: `Restore ${args.path} to ${baseName(args.target)}`,
      describe: (result) => `${formatBytes(result.bytes)} copied to ${result.target}.`,
      onStarted,
      answeredCodes: UNLOCK_CODES,
    });
  }

  function hasPassphrase(path: string): boolean {
    return passphrases.has(path);
  }

  return { browses, browseOf, open, unlock, unlockVolume, hasVolumePassphrase, forget, compare, restore, hasPassphrase };
});
