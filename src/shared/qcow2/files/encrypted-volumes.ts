/**
 * Encrypted volumes among a state's volumes (LUKS on a partition, on an LVM logical volume, or on
 * the whole disk): each one's header is read and described (info.encryption) without a
 * passphrase; one a given passphrase opens is read decrypted, and what it holds (a filesystem,
 * an LVM physical volume's logical volumes, a partition table) is listed after it as more volumes:
 * a filesystem as `luks-<uuid>` (systemd-cryptsetup's name for it), logical volumes by their
 * device-mapper names. Their offsets and segments are still guest bytes (the encryption maps
 * sector to sector), so files-diff's shortcut over changed guest ranges holds inside them too.
 */
import { Qcow2Error } from '../errors.ts';
import type { JobContext } from '../job-context.ts';
import type { GuestVolumeInfo } from '../model.ts';
import type { ByteRange } from './filesystem.ts';
import { decryptedReader, readGuestLuks, type GuestLuks } from './guest-luks.ts';
import { cachedVolumeKey } from './luks-key-cache.ts';
import { CachedGuestBytes } from './volume-bytes.ts';
import { guestRangesOf } from './volume-ranges.ts';
import type { FoundVolume, FoundVolumes } from './volumes.ts';

/** A passphrase for the encrypted volume whose header has `uuid`, or (no uuid) for any. */
export interface VolumePassphrase {
  uuid?: string;
  passphrase: Uint8Array;
}

export interface VolumeUnlockOptions {
  passphrases?: readonly VolumePassphrase[];
  /** Cancel and progress while a key slot is tried (seconds each). */
  job?: JobContext;
}

/** Finds the volumes of decrypted bytes (findVolumes, passed in to keep the modules apart). */
export type FindInnerVolumes = (disk: CachedGuestBytes) => Promise<FoundVolumes>;

/**
 * Describes every encrypted volume of `found` (info.encryption, or info.problem when its header
 * does not read) and returns the volumes inside those the passphrases open, in order.
 */
export async function unlockedVolumes(guest: CachedGuestBytes, found: readonly FoundVolume[], options: VolumeUnlockOptions, findInner: FindInnerVolumes): Promise<FoundVolume[]> {
  const inside: FoundVolume[] = [];
  for (const volume of found) {
    if (volume.info.holds !== 'luks' || volume.filesystem !== null) continue;
    const { info } = volume;
    const readCiphertext = (buffer: Uint8Array, volumeOffset: number): void => {
      let done = 0;
      for (const range of guestRangesOf(info, volumeOffset, buffer.length)) {
        guest.read(buffer.subarray(done, done + range.length), range.offset);
        done += range.length;
      }
    };
    const readAt = (offset: number, length: number): Promise<Uint8Array> => {
      if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > info.length) return Promise.reject(new Qcow2Error('FILESYSTEM_CORRUPT', `The encryption header points at bytes ${offset}–${offset + length}, past the ${info.length}-byte volume`));
      const bytes = new Uint8Array(length);
      try {
        readCiphertext(bytes, offset);
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)));
      }
      return Promise.resolve(bytes);
    };
    let luks: GuestLuks;
    try {
      luks = await readGuestLuks(readAt, info.length);
    } catch (error) {
      if (!isVolumeError(error)) throw error;
      info.problem = error.message;
      continue;
    }
    info.encryption = { ...luks.header, unlocked: false };
    const volumeKey = await openWithPassphrases(luks, info, options);
    if (volumeKey === null) continue;
    const cipher = luks.dataCipher(volumeKey);
    volumeKey.fill(0);
    info.encryption.unlocked = true;
    // What it holds decrypted follows from the container's bytes (a wrong passphrase opens nothing).
    const identity = guest.identity === null ? null : `luks ${info.offset}+${info.length} in ${guest.identity}`;
    const disk = new CachedGuestBytes(decryptedReader(luks, cipher, readCiphertext), identity);
    const inner = await findInner(disk);
    const name = `luks-${luks.header.uuid}`;
    for (const each of inner.volumes) inside.push({ ...each, info: outerInfo(each.info, info, luks.payloadOffset, name) });
  }
  return inside;
}

/** The key the first fitting passphrase opens (those given for this UUID first), or null; a failure becomes the volume's encryption problem. */
async function openWithPassphrases(luks: GuestLuks, info: GuestVolumeInfo, options: VolumeUnlockOptions): Promise<Uint8Array | null> {
  const uuid = luks.header.uuid.toLowerCase();
  const given = options.passphrases ?? [];
  const candidates = [...given.filter((entry) => entry.uuid?.toLowerCase() === uuid), ...given.filter((entry) => entry.uuid === undefined)];
  for (const { passphrase } of candidates) {
    try {
      const key = await cachedVolumeKey(luks.identity, passphrase, () => luks.unlock(passphrase, options.job));
      // Another passphrase given may have failed on it first (one given for any volume).
      if (info.encryption !== undefined) {
        delete info.encryption.problem;
        delete info.encryption.problemCode;
      }
      return key;
    } catch (error) {
      if (!(error instanceof Qcow2Error) || !(error.code === 'BAD_PASSPHRASE' || isVolumeError(error))) throw error;
      if (info.encryption !== undefined) Object.assign(info.encryption, { problem: error.message, problemCode: error.code });
      if (error.code !== 'BAD_PASSPHRASE') return null;
    }
  }
  return null;
}

/** A volume found inside the decrypted data, placed in guest bytes and named for the app. */
function outerInfo(inner: GuestVolumeInfo, encrypted: GuestVolumeInfo, payloadOffset: number, name: string): GuestVolumeInfo {
  const ranges = joined(guestRangesOf(inner, 0, inner.length).flatMap((range) => guestRangesOf(encrypted, payloadOffset + range.offset, range.length)));
  const { segments: _innerSegments, ...rest } = inner;
  const info: GuestVolumeInfo = { ...rest, offset: ranges[0]?.offset ?? encrypted.offset + payloadOffset, encryptedIn: encrypted.name };
  if (ranges.length > 1 || inner.segments !== undefined) info.segments = ranges;
  if (inner.logicalVolume === undefined) info.name = inner.name === '' ? name : `${name}-${inner.name}`;
  return info;
}

function joined(ranges: ByteRange[]): ByteRange[] {
  const out: ByteRange[] = [];
  for (const range of ranges) {
    const last = out.at(-1);
    if (last !== undefined && last.offset + last.length === range.offset) last.length += range.length;
    else out.push({ ...range });
  }
  return out;
}

function isVolumeError(error: unknown): error is Qcow2Error {
  return error instanceof Qcow2Error && (error.code === 'FILESYSTEM_CORRUPT' || error.code === 'FILESYSTEM_UNSUPPORTED' || error.code === 'NO_FILESYSTEM');
}
