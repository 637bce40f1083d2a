/**
 * What the user can do to a whole disk beyond its snapshots: compress or compact it, encrypt or
 * decrypt it (each replaces the file by a checked, verified copy), change its passphrase (in
 * place), and save one snapshot's state as a new disk. Each runs as a job in the jobs panel; a
 * dialog that started one follows it through `onStarted`. A job on an encrypted disk's data takes
 * the passphrase in its arguments; a wrong or missing one is the dialog's to answer (it asks again).
 */
import { shownName } from '../lib/shown-name.ts';
import type { ApiErrorCode } from '../lib/api-error.ts';
import type { JobArgs, PassphraseChange, RescueReport, ResizePreview, ResizeResult, RewritePreview, RewriteSummary, SnapshotExport } from '../../../shared/ipc/contract.ts';
import { describeRescue } from '../lib/describe-rescue.ts';
import type { ImageInfo } from '../../../shared/qcow2/model.ts';
import { describeDecrypt, describeEncrypt, describeExport, describePassphraseChange, describeRewrite } from '../lib/describe-rewrite.ts';
import { formatBytes } from '../../../shared/format-units.ts';
import { baseName } from '../lib/paths.ts';
import { useJobsStore } from './jobs.ts';
import { useLibraryStore } from './library.ts';
import { useAppStore } from './app.ts';
import { CONNECTION_LOST, useSnapshotActions } from './snapshot-actions.ts';

export type RewriteMode = 'compress' | 'compact' | 'encrypt' | 'decrypt';
export type DiskEncryption = 'luks' | 'aes' | null;

export const ENCRYPTED_COMPRESS = 'An encrypted disk cannot be compressed: QEMU stores compressed clusters unencrypted. Compact it instead, or decrypt it first.';
export const ALREADY_ENCRYPTED = 'This disk is already encrypted with LUKS. To change what unlocks it, use Change Passphrase….';
export const NOT_ENCRYPTED = 'This disk is not encrypted.';
export const LEGACY_AES_PASSPHRASE = 'This disk uses the old qcow2 AES encryption, which has no key slots: encrypt it afresh with LUKS (Encrypt…) to manage its passphrases.';
export const WRITTEN_ELSEWHERE = 'Another program (a running VM or qemu-nbd) is writing this disk, so a copy would catch it mid-change. Shut that program down first.';

/** What a wrong or missing passphrase ends a job with: the dialog asks for the passphrase again. */
const UNLOCK_CODES: readonly ApiErrorCode[] = ['LOCKED', 'BAD_PASSPHRASE'];

export function isEncrypted(info: ImageInfo | null | undefined): boolean {
  return Boolean(info?.encrypted ?? info?.['format-specific'].data.encrypt);
}

/** LUKS, the old qcow2 AES scheme, or none. */
export function encryptionOf(info: ImageInfo | null | undefined): DiskEncryption {
  const format = info?.['format-specific'].data.encrypt?.format;
  if (format === 'luks' || format === 'aes') return format;
  return isEncrypted(info) ? 'luks' : null;
}

export function useDiskActions() {
  const jobs = useJobsStore();
  const library = useLibraryStore();
  const snapshotActions = useSnapshotActions();

  function infoOf(path: string): ImageInfo | null {
    return library.disks.find((disk) => disk.path === path)?.info ?? null;
  }

  /** Why this rewrite cannot run on this disk, in words; null when it can. */
  function rewriteBlockedReason(path: string, mode: RewriteMode = 'compact'): string | null {
    const blocked = snapshotActions.writeBlockedReason(path, { rewrite: true });
    if (blocked) return blocked;
    const encryption = encryptionOf(infoOf(path));
    if (mode === 'compress' && encryption !== null) return ENCRYPTED_COMPRESS;
    if (mode === 'encrypt' && encryption === 'luks') return ALREADY_ENCRYPTED;
    if (mode === 'decrypt' && encryption === null) return NOT_ENCRYPTED;
    return null;
  }

  /** Why the passphrases of this disk cannot be changed; null when they can (a LUKS disk Cowbell may write). */
  function passphraseBlockedReason(path: string): string | null {
    const blocked = snapshotActions.writeBlockedReason(path);
    if (blocked) return blocked;
    const encryption = encryptionOf(infoOf(path));
    if (encryption === 'aes') return LEGACY_AES_PASSPHRASE;
    if (encryption === null) return NOT_ENCRYPTED;
    return null;
  }

  /** Why a snapshot of this disk cannot be saved as a new disk; null when it can (a read-only disk can). */
  function exportBlockedReason(path: string): string | null {
    if (useAppStore().connectionState === 'lost') return CONNECTION_LOST;
    const info = infoOf(path);
    if (info?.['in-use'] === true) return WRITTEN_ELSEWHERE;
    return null;
  }

  /** The figures a compress or compact dialog shows before it starts (a quick background read). */
  function preview(path: string, args: JobArgs<'image.rewritePreview'>): Promise<RewritePreview> {
    return jobs.run('image.rewritePreview', path, args, { title: 'Estimate the new size', background: true });
  }

  function compress(path: string, args: JobArgs<'image.compress'>, onStarted?: (jobId: string) => void): Promise<RewriteSummary> {
    return snapshotActions.write('image.compress', path, args, { title: 'Compress', describe: describeRewrite, onStarted }, { waitForReread: false });
  }

  function compact(path: string, args: JobArgs<'image.compact'>, onStarted?: (jobId: string) => void): Promise<RewriteSummary> {
    const title = args.uncompress ? 'Compact and uncompress' : 'Compact';
    return snapshotActions.write('image.compact', path, args, { title, describe: describeRewrite, onStarted, answeredCodes: UNLOCK_CODES }, { waitForReread: false });
  }

  function encrypt(path: string, args: JobArgs<'image.encrypt'>, onStarted?: (jobId: string) => void): Promise<RewriteSummary> {
    return snapshotActions.write('image.encrypt', path, args, { title: 'Encrypt', describe: describeEncrypt, onStarted, answeredCodes: UNLOCK_CODES }, { waitForReread: false });
  }

  function decrypt(path: string, args: JobArgs<'image.decrypt'>, onStarted?: (jobId: string) => void): Promise<RewriteSummary> {
    return snapshotActions.write('image.decrypt', path, args, { title: 'Decrypt', describe: describeDecrypt, onStarted, answeredCodes: UNLOCK_CODES }, { waitForReread: false });
  }

  function changePassphrase(path: string, args: JobArgs<'image.passphrase'>, onStarted?: (jobId: string) => void): Promise<PassphraseChange> {
    const title = args.action === 'add' ? 'Add a passphrase' : args.action === 'remove' ? 'Remove a passphrase' : 'Change the passphrase';
    return snapshotActions.write('image.passphrase', path, args, { title, describe: describePassphraseChange, onStarted, answeredCodes: ['BAD_PASSPHRASE'] }, { waitForReread: false });
  }

  function exportSnapshot(path: string, args: JobArgs<'snapshot.export'>, onStarted?: (jobId: string) => void): Promise<SnapshotExport> {
    return jobs.run('snapshot.export', path, args, {
      title: `Save “${shownName(args.name)}” of ${baseName(path)} as ${baseName(args.target)}`,
      describe: describeExport,
      onStarted,
    });
  }

  /** "Save what can be read…": a read of the disk into a new file, however damaged the disk is. */
  function rescue(path: string, args: JobArgs<'image.rescue'>, onStarted?: (jobId: string) => void): Promise<RescueReport> {
    return jobs.run('image.rescue', path, args, {
      title: `Save what can be read of ${baseName(path)} as ${baseName(args.target)}`,
      describe: describeRescue,
      onStarted,
    });
  }

  /** What a resize to `size` would do: for a shrink, the data each state holds past the new end (a quick background read). */
  function resizePreview(path: string, size: number): Promise<ResizePreview> {
    return jobs.run('image.resizePreview', path, { size }, { title: 'Look past the new end', background: true });
  }

  /** Resizes in place; the disk is read again after, so its new size shows. A missing passphrase is the dialog's to ask for. */
  function resize(path: string, args: JobArgs<'image.resize'>, onStarted?: (jobId: string) => void): Promise<ResizeResult> {
    return snapshotActions.write('image.resize', path, args, {
      title: `Resize to ${formatBytes(args.size)}`,
      onStarted,
      answeredCodes: UNLOCK_CODES,
      describe: (result) =>
        `The disk is now ${formatBytes(result.newSize)} (was ${formatBytes(result.previousSize)})${result.discardedBytes > 0 ? `; ${formatBytes(result.discardedBytes)} of data past the end was discarded` : ''}.`,
    }, { waitForReread: false });
  }

  return { resizePreview, resize, rewriteBlockedReason, passphraseBlockedReason, exportBlockedReason, preview, compress, compact, encrypt, decrypt, changePassphrase, exportSnapshot, rescue };
}
