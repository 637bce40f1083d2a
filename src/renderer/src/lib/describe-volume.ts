/**
 * A guest volume in the Files panel's words: what it holds (filesystem, label, size, LVM), an
 * encrypted one's format and whether it is unlocked, where a volume found inside an unlocked one
 * lies, or why it cannot be read.
 */
import type { GuestVolumeInfo } from '../../../shared/ipc/contract.ts';
import { formatBytes } from '../../../shared/format-units.ts';
import { VOLUME_CONTENT_NAMES, type GuestEncryption } from '../../../shared/qcow2/model.ts';

/** Each filesystem as its own people spell it. */
const FILESYSTEM_NAMES: Record<NonNullable<GuestVolumeInfo['filesystem']>, string> = { ext: 'ext2/3/4', xfs: 'XFS', btrfs: 'btrfs', fat: 'FAT', ntfs: 'NTFS' };

const ENCRYPTION_FORMATS: Record<GuestEncryption['format'], string> = { luks1: 'LUKS1', luks2: 'LUKS2' };

function capitalized(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/** "LUKS2-encrypted · locked · “cryptroot”": the header's format, its state, its label. */
function describeEncryption(encryption: GuestEncryption): string[] {
  return [`${ENCRYPTION_FORMATS[encryption.format]}-encrypted`, encryption.unlocked ? 'unlocked' : 'locked', ...(encryption.label ? [`“${encryption.label}”`] : [])];
}

export function describeVolume(volume: GuestVolumeInfo): string {
  if (volume.physicalVolumeOf !== undefined) return `LVM physical volume of group ${volume.physicalVolumeOf} · ${formatBytes(volume.length)}: its logical volumes are listed on their own`;
  if (volume.encryption !== undefined) return [...describeEncryption(volume.encryption), formatBytes(volume.length)].join(' · ');
  const filesystem = volume.filesystem !== null ? FILESYSTEM_NAMES[volume.filesystem] : volume.holds !== undefined ? capitalized(VOLUME_CONTENT_NAMES[volume.holds]) : 'no filesystem';
  const logical = volume.logicalVolume === undefined ? null : `LVM ${volume.logicalVolume.group}/${volume.logicalVolume.name}`;
  const inside = volume.encryptedIn === undefined ? null : `inside /${volume.encryptedIn}`;
  return [filesystem, volume.label ? `“${volume.label}”` : null, formatBytes(volume.length), logical, inside].filter(Boolean).join(' · ');
}

/** Why a volume cannot be read, or null when it reads or is something with nothing wrong (LVM, swap, an encrypted volume still locked). */
export function volumeProblem(volume: GuestVolumeInfo | null): string | null {
  if (volume === null) return null;
  const encryptionProblem = volume.encryption?.problem;
  // An encrypted volume says what it is before why it stays shut (a passphrase kept that no longer opens it in this state).
  if (encryptionProblem !== undefined) return `${describeVolume(volume)}: ${encryptionProblem}`;
  // An LVM physical volume, swap space or an encrypted volume holds no filesystem Cowbell reads, and nothing is wrong with it: it says what it is.
  if (volume.problem === undefined && (volume.physicalVolumeOf !== undefined || volume.holds !== undefined)) return null;
  return volume.problem ?? (volume.filesystem === null ? 'No filesystem Cowbell can read' : null);
}

/** An encrypted volume a passphrase may open: locked, by no fault of its header (a wrong passphrase can be given again). */
export function unlockableEncryption(volume: GuestVolumeInfo | null): GuestEncryption | null {
  const encryption = volume?.encryption;
  if (encryption === undefined || encryption.unlocked) return null;
  return encryption.problemCode === undefined || encryption.problemCode === 'BAD_PASSPHRASE' ? encryption : null;
}
