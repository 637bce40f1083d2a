/**
 * What the user can do to a whole disk beyond its snapshots: compress or compact it (the file is
 * replaced by a checked, verified copy), and save one snapshot's state as a new disk. Each runs as
 * a job in the jobs panel; a dialog that started one follows it through `onStarted`.
 */
import type { JobArgs, RewritePreview, RewriteSummary, SnapshotExport } from '../../../shared/ipc/contract.ts';
import type { ImageInfo } from '../../../shared/qcow2/model.ts';
import { describeExport, describeRewrite } from '../lib/describe-rewrite.ts';
import { baseName } from '../lib/paths.ts';
import { useJobsStore } from './jobs.ts';
import { useLibraryStore } from './library.ts';
import { useSnapshotActions } from './snapshot-actions.ts';

export const ENCRYPTED_REWRITE = 'This disk is encrypted. Cowbell cannot compress or compact encrypted disks yet.';
export const ENCRYPTED_EXPORT = 'This disk is encrypted. Cowbell cannot read an encrypted disk’s data yet, so it cannot save a snapshot of it as a new disk.';
export const WRITTEN_ELSEWHERE = 'Another program (a running VM or qemu-nbd) is writing this disk, so a copy would catch it mid-change. Shut that program down first.';

export function isEncrypted(info: ImageInfo | null | undefined): boolean {
  return Boolean(info?.encrypted ?? info?.['format-specific'].data.encrypt);
}

export function useDiskActions() {
  const jobs = useJobsStore();
  const library = useLibraryStore();
  const snapshotActions = useSnapshotActions();

  function infoOf(path: string): ImageInfo | null {
    return library.disks.find((disk) => disk.path === path)?.info ?? null;
  }

  /** Why compress and compact cannot run on this disk, in words; null when they can. */
  function rewriteBlockedReason(path: string): string | null {
    return snapshotActions.writeBlockedReason(path) ?? (isEncrypted(infoOf(path)) ? ENCRYPTED_REWRITE : null);
  }

  /** Why a snapshot of this disk cannot be saved as a new disk; null when it can (a read-only disk can). */
  function exportBlockedReason(path: string): string | null {
    const info = infoOf(path);
    if (isEncrypted(info)) return ENCRYPTED_EXPORT;
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
    return snapshotActions.write('image.compact', path, args, { title: args.uncompress ? 'Compact and uncompress' : 'Compact', describe: describeRewrite, onStarted }, { waitForReread: false });
  }

  function exportSnapshot(path: string, args: JobArgs<'snapshot.export'>, onStarted?: (jobId: string) => void): Promise<SnapshotExport> {
    return jobs.run('snapshot.export', path, args, {
      title: `Save “${args.name}” of ${baseName(path)} as ${baseName(args.target)}`,
      describe: describeExport,
      onStarted,
    });
  }

  return { rewriteBlockedReason, exportBlockedReason, preview, compress, compact, exportSnapshot };
}
