/** ImageInfo fields in words, kept out of the components so each rule is stated (and tested) once. */
import type { ImageInfo } from '../../../shared/ipc/contract.ts';
import { formatBytes } from '../../../shared/format-units.ts';

/** compat 0.10 is qcow2 version 2; compat 1.1 is version 3. */
export function formatVersion(info: ImageInfo): string {
  return info['format-specific'].data.compat === '0.10' ? 'qcow2 v2' : 'qcow2 v3';
}

export function describeEncryption(info: ImageInfo): string {
  const format = info['format-specific'].data.encrypt?.format;
  if (format === 'luks') return 'LUKS';
  if (format === 'aes') return 'AES (legacy qcow2)';
  return info.encrypted ? 'Encrypted' : 'None';
}

/**
 * An encrypted disk's guest bytes stored in the clear: compressed clusters, which QEMU writes
 * unencrypted (qemu-io write -c, or a compressed image encrypted by an older tool). Null when none.
 * The remedy follows the encryption (encrypt.format): Compact keeps LUKS; the old AES encryption it
 * does not take, and Encrypt moves such a disk to LUKS.
 */
export function describeUnencrypted(bytes: number | undefined, encryption: string | undefined): string | null {
  if (bytes === undefined || bytes <= 0) return null;
  const remedy = encryption === 'aes' ? 'Encrypt… encrypts them, moving the disk to LUKS.' : 'Compact… encrypts them.';
  return `${formatBytes(bytes)} of this encrypted disk is stored unencrypted: compressed clusters, which QEMU writes in the clear. ${remedy}`;
}

export interface BackingDescription {
  file: string;
  format: string | null;
}

export function describeBacking(info: ImageInfo): BackingDescription | null {
  const file = info['backing-filename'];
  if (!file) return null;
  return { file, format: info['backing-filename-format'] ?? null };
}

export interface ImageFlag {
  key: 'read-only' | 'corrupt' | 'dirty';
  label: string;
  tone: 'danger' | 'warning' | 'neutral';
  /** What the flag means for the user. */
  description: string;
}

export function imageFlags(info: ImageInfo): ImageFlag[] {
  const flags: ImageFlag[] = [];
  if (info['format-specific'].data.corrupt) {
    flags.push({
      key: 'corrupt',
      label: 'Corrupt',
      tone: 'danger',
      description: 'QEMU marked this image corrupt; it will not write to it until it is repaired.',
    });
  }
  if (info['dirty-flag']) {
    flags.push({
      key: 'dirty',
      label: 'Dirty',
      tone: 'warning',
      description: 'The image was not closed cleanly; its refcounts need a check before they can be trusted.',
    });
  }
  const readOnlyReason = info['read-only-reason'];
  if (readOnlyReason !== undefined) {
    flags.push({ key: 'read-only', label: 'Read-only', tone: 'neutral', description: readOnlyReason });
  }
  return flags;
}
