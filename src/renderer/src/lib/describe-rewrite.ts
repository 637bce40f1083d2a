/** Compress, compact, encrypt, decrypt, passphrase changes and save-as in words: the estimate before, the result after. */
import { compressedStates } from '../../../shared/compressed-states.ts';
import type { CompressedData, PassphraseChange, RewritePreview, RewriteSummary, SnapshotExport } from '../../../shared/ipc/contract.ts';
import { formatBytes, sizeChange } from '../../../shared/format-units.ts';
import { baseName } from './paths.ts';

/**
 * Room the engine keeps free beside the new file (rewrite.ts refuses to start with less): the
 * dialog's "does it fit" is the engine's own test, so a start it allows is never refused for space.
 */
export const SPACE_MARGIN_BYTES = 16 * 1024 * 1024;

export function snapshotsKept(count: number): string {
  if (count === 0) return 'no snapshots to keep';
  return count === 1 ? '1 snapshot kept' : `${count} snapshots kept`;
}

/** The jobs panel's line for a finished compress or compact: "2.1 GiB → 930 MiB (57% smaller); 2 snapshots kept." */
export function describeRewrite(result: RewriteSummary): string {
  return `${formatBytes(result.beforeBytes)} → ${formatBytes(result.afterBytes)} (${sizeChange(result.beforeBytes, result.afterBytes)}); ${snapshotsKept(result.snapshots)}.`;
}

/** "Encrypted with LUKS; 2 snapshots kept (2.1 GiB → 2.1 GiB)." */
export function describeEncrypt(result: RewriteSummary): string {
  return `Encrypted with LUKS; ${snapshotsKept(result.snapshots)} (${formatBytes(result.beforeBytes)} → ${formatBytes(result.afterBytes)}).`;
}

export function describeDecrypt(result: RewriteSummary): string {
  return `Decrypted: the data is stored plain; ${snapshotsKept(result.snapshots)} (${formatBytes(result.beforeBytes)} → ${formatBytes(result.afterBytes)}).`;
}

/** "1 passphrase opens the disk now." */
export function describePassphraseChange(result: PassphraseChange): string {
  const count = result.activeSlots.length;
  const opens = `${count === 1 ? '1 passphrase opens' : `${count} passphrases open`} the disk now.`;
  if (result.added !== null && result.removed.length > 0) return `Passphrase changed; ${opens}`;
  if (result.added !== null) return `Passphrase added; ${opens}`;
  return `Passphrase removed; ${opens}`;
}

export function describeExport(result: SnapshotExport): string {
  return `Saved as ${baseName(result.target)}: a ${formatBytes(result.virtualSize)} ${result.format} disk in a ${formatBytes(result.fileBytes)} file.`;
}

export interface SpaceVerdict {
  /** Why the rewrite cannot start: the likely new file does not fit. */
  problem: string | null;
  /** A worry that does not stop it: the worst case would not fit. */
  caution: string | null;
}

/** Whether the new file fits beside the disk, by the estimate (refused) and by the worst case (a caution). */
export function spaceVerdict(preview: RewritePreview): SpaceVerdict {
  if (preview.freeBytes === null) return { problem: null, caution: null };
  const needed = preview.expectedBytes + SPACE_MARGIN_BYTES;
  if (needed > preview.freeBytes) {
    return {
      problem: `Not enough free space: the new file needs about ${formatBytes(needed)} beside the disk, and ${formatBytes(preview.freeBytes)} is free. Free some space first.`,
      caution: null,
    };
  }
  if (preview.maxBytes + SPACE_MARGIN_BYTES > preview.freeBytes) {
    return {
      problem: null,
      caution: `Space is tight: if the data packs less well than the sample suggests, the new file could need up to ${formatBytes(preview.maxBytes)}. Cowbell stops, changing nothing, if the drive fills up.`,
    };
  }
  return { problem: null, caution: null };
}

/**
 * What Encrypt… (or Compact… of an encrypted disk) does to the disk's compressed data, which QEMU
 * cannot keep encrypted: null when there is none. `sourceEncrypted`: it is stored in the clear now.
 * Its size uncompressed is a bound (a cluster each; zeros inside one take no room in the new file).
 */
export function describeStoredUncompressed(data: CompressedData, sourceEncrypted: boolean): string | null {
  if (data.clusters <= 0) return null;
  const where = compressedStates(data);
  const growth = Math.max(0, data.guestBytes - data.storedBytes);
  const why = sourceEncrypted
    ? 'It is stored unencrypted now: QEMU writes compressed clusters of an encrypted disk in the clear.'
    : 'QEMU cannot keep compressed data encrypted.';
  return (
    `${formatBytes(data.storedBytes)} of compressed data${where === '' ? '' : ` (in ${where})`} will be stored uncompressed and encrypted. ${why} ` +
    `Uncompressed, it takes up to ${formatBytes(data.guestBytes)}: ${formatBytes(growth)} more than now.`
  );
}
