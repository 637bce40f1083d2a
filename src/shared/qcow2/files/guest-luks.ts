/**
 * A LUKS-encrypted volume inside a guest (LUKS1 or LUKS2, as cryptsetup makes them for an encrypted
 * install): its header read without a passphrase, opened with one, and its data read decrypted
 * as dm-crypt would present it. Both number 512-byte sectors from the data's start for their IVs,
 * LUKS2 even where its encryption sectors are larger (cryptsetup activates LUKS2 without
 * dm-crypt's iv_large_sectors: a 4096-byte sector's IV is its first 512-byte sector's number). Errors are the guest-file codes: FILESYSTEM_CORRUPT for
 * a damaged header, FILESYSTEM_UNSUPPORTED for what Cowbell does not open, BAD_PASSPHRASE.
 */
import { unlockLuks } from '../crypto/luks-keys.ts';
import { unlockLuks2, type VolumeReadAt } from '../crypto/luks2-keys.ts';
import { createSectorCipher, type SectorCipher } from '../crypto/sector-cipher.ts';
import { Qcow2Error } from '../errors.ts';
import { describeLuksCipher, keyMaterialBytes, LUKS_PHDR_BYTES, parseLuksHeader, type LuksCipher, type LuksHeader } from '../format/luks-header.ts';
import { isLuks2, readLuks2Header, type Luks2Header } from '../format/luks2-header.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { GuestEncryption } from '../model.ts';

export type GuestLuksHeader = Omit<GuestEncryption, 'unlocked' | 'problem' | 'problemCode'>;

export interface GuestLuks {
  header: GuestLuksHeader;
  /** Where the encrypted data lies in the volume, and its length (whole sectors). */
  payloadOffset: number;
  payloadBytes: number;
  /** Names this volume key for a cache: the same only where the same key opens the data. */
  identity: string;
  /** The volume key `passphrase` opens (the caller zeroes it); BAD_PASSPHRASE if it opens none. */
  unlock(passphrase: Uint8Array, job?: JobContext): Promise<Uint8Array>;
  /** A cipher of the data under `volumeKey` (copied: the caller may zero its buffer). */
  dataCipher(volumeKey: Uint8Array): SectorCipher;
}

/** The encrypted volume whose bytes `readAt` reads (volumeBytes long). */
export async function readGuestLuks(readAt: VolumeReadAt, volumeBytes: number): Promise<GuestLuks> {
  if (volumeBytes < LUKS_PHDR_BYTES) throw new Qcow2Error('FILESYSTEM_CORRUPT', 'The volume is too small to hold a LUKS header');
  const start = await readAt(0, LUKS_PHDR_BYTES);
  return isLuks2(start) ? luks2Volume(await readLuks2Header(readAt, volumeBytes), readAt, volumeBytes) : luks1Volume(start, readAt, volumeBytes);
}

function luks2Volume(header: Luks2Header, readAt: VolumeReadAt, volumeBytes: number): GuestLuks {
  const { segment } = header;
  if (segment.ivTweak !== 0) throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `This LUKS2 volume's data starts at IV sector ${segment.ivTweak}, not 0 (left so by re-encryption): Cowbell does not read it`);
  const keyBytes = header.keyslots.find((slot) => header.digest.keyslots.includes(slot.id))?.keyBytes ?? segment.cipher.keyBytes;
  const cipher: LuksCipher = { ...segment.cipher, keyBytes };
  const payloadBytes = segment.bytes ?? Math.floor((volumeBytes - segment.offset) / segment.sectorBytes) * segment.sectorBytes;
  return {
    header: { format: 'luks2', uuid: header.uuid, ...(header.label === '' ? {} : { label: header.label }), cipher: describeLuksCipher(cipher), sectorBytes: segment.sectorBytes },
    payloadOffset: segment.offset,
    payloadBytes,
    identity: `luks2:${header.uuid}:${hexOf(header.digest.digest)}:${hexOf(header.digest.salt)}`,
    async unlock(passphrase, job = silentJob) {
      const { volumeKey } = await unlockLuks2(header, readAt, passphrase, job);
      if (volumeKey.length !== keyBytes) {
        volumeKey.fill(0);
        throw new Qcow2Error('FILESYSTEM_CORRUPT', `The LUKS2 volume key is ${volumeKey.length} bytes long where its cipher takes ${keyBytes}`);
      }
      return volumeKey;
    },
    dataCipher: (volumeKey) => guestCipher(cipher, volumeKey, segment.sectorBytes),
  };
}

function luks1Volume(start: Uint8Array, readAt: VolumeReadAt, volumeBytes: number): GuestLuks {
  const header = guestCodes(() => parseLuksHeader(start, volumeBytes));
  const payloadOffset = header.payloadOffsetSectors * 512;
  if (payloadOffset >= volumeBytes) throw new Qcow2Error('FILESYSTEM_CORRUPT', `The LUKS1 header puts the data at ${payloadOffset}, past the ${volumeBytes}-byte volume`);
  return {
    header: { format: 'luks1', uuid: header.uuid, cipher: describeLuksCipher(header.cipher), sectorBytes: 512 },
    payloadOffset,
    payloadBytes: Math.floor((volumeBytes - payloadOffset) / 512) * 512,
    identity: `luks1:${header.uuid}:${hexOf(header.masterKeyDigest)}:${hexOf(header.masterKeyDigestSalt)}`,
    async unlock(passphrase, job = silentJob) {
      const area = await readAt(0, keySlotsEnd(header));
      const readArea = (offset: number, length: number): Uint8Array => {
        if (offset + length > area.length) throw new Qcow2Error('FILESYSTEM_CORRUPT', 'LUKS1 key material lies past the key slots it was read for');
        return area.slice(offset, offset + length);
      };
      return guestCodes(() => unlockLuks(header, readArea, passphrase, job).masterKey);
    },
    dataCipher: (volumeKey) => guestCipher(header.cipher, volumeKey, 512),
  };
}

/**
 * The decrypted data as a guest reader (whole-sector reads from `readCiphertext`, which reads the
 * encrypted volume's bytes), `payloadBytes` long.
 */
export function decryptedReader(luks: GuestLuks, cipher: SectorCipher, readCiphertext: (buffer: Uint8Array, volumeOffset: number) => void): { virtualSize: number; readInto(buffer: Uint8Array, offset: number): void } {
  const sector = luks.header.sectorBytes;
  return {
    virtualSize: luks.payloadBytes,
    readInto(buffer, offset) {
      const first = Math.floor(offset / sector) * sector;
      const end = Math.ceil((offset + buffer.length) / sector) * sector;
      const direct = first === offset && end === offset + buffer.length;
      const work = direct ? buffer : new Uint8Array(end - first);
      readCiphertext(work, luks.payloadOffset + first);
      cipher.decryptSectors(work, first / 512);
      if (!direct) buffer.set(work.subarray(offset - first, offset - first + buffer.length));
    },
  };
}

function guestCipher(cipher: LuksCipher, volumeKey: Uint8Array, sectorBytes: number): SectorCipher {
  return guestCodes(() => createSectorCipher(cipher, volumeKey, { unitBytes: sectorBytes }));
}

/** Where the last active key slot's material ends: what unlocking reads. */
function keySlotsEnd(header: LuksHeader): number {
  let end = LUKS_PHDR_BYTES;
  for (const slot of header.keySlots) if (slot.active) end = Math.max(end, slot.keyMaterialOffsetSectors * 512 + Math.ceil(keyMaterialBytes(header, slot) / 512) * 512);
  return end;
}

/** The engine's image codes (and words) as the guest-file codes the volume list reports. */
function guestCodes<T>(work: () => T): T {
  try {
    return work();
  } catch (error) {
    if (!(error instanceof Qcow2Error) || error.code.startsWith('FILESYSTEM_')) throw error;
    if (error.code === 'BAD_PASSPHRASE') throw new Qcow2Error('BAD_PASSPHRASE', 'The passphrase opens none of the encrypted volume\'s key slots');
    const code = error.code === 'CORRUPT' || error.code === 'TRUNCATED' ? 'FILESYSTEM_CORRUPT' : 'FILESYSTEM_UNSUPPORTED';
    throw new Qcow2Error(code, error.message.replace('The LUKS area', 'The volume'));
  }
}

function hexOf(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
