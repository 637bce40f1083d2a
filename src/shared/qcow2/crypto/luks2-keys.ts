/**
 * Opening a LUKS2 key slot with a passphrase (read only): the slot's key from the passphrase by
 * its KDF (PBKDF2, Argon2i or Argon2id), its key material decrypted with that key (512-byte
 * sectors numbered from 0 within the area, as cryptsetup encrypts it), merged by the
 * anti-forensic splitter, and accepted only if its PBKDF2 digest matches the header's. Slots are
 * tried high priority first, then normal; "ignore" slots are never tried (cryptsetup tries them
 * only when asked for by number). Each slot costs its KDF: seconds at cryptsetup's defaults.
 */
import { Qcow2Error } from '../errors.ts';
import type { Luks2Header, Luks2Keyslot } from '../format/luks2-header.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { afMerge } from './af-splitter.ts';
import { argon2 } from './argon2.ts';
import { nodeCrypto } from './node-crypto.ts';
import { pbkdf2 } from './pbkdf2.ts';
import { createSectorCipher } from './sector-cipher.ts';

export interface Luks2Unlock {
  volumeKey: Uint8Array;
  /** The key slot the passphrase opened. */
  keyslot: string;
}

/** Reads `length` bytes at `offset` of the volume. */
export type VolumeReadAt = (offset: number, length: number) => Promise<Uint8Array>;

/** The volume key from the first slot `passphrase` opens; BAD_PASSPHRASE when none does. */
export async function unlockLuks2(header: Luks2Header, readAt: VolumeReadAt, passphrase: Uint8Array, job: JobContext = silentJob): Promise<Luks2Unlock> {
  const candidates = header.keyslots
    .filter((slot) => slot.priority > 0 && header.digest.keyslots.includes(slot.id))
    .sort((a, b) => b.priority - a.priority || Number(a.id) - Number(b.id));
  for (const [done, slot] of candidates.entries()) {
    job.throwIfCancelled();
    job.progress('Trying key slots', done, candidates.length, 'steps');
    const volumeKey = await openKeyslot(header, slot, readAt, passphrase);
    if (volumeKey !== null) return { volumeKey, keyslot: slot.id };
  }
  throw new Qcow2Error('BAD_PASSPHRASE', candidates.length === 0 ? 'The encrypted volume has no key slot a passphrase can open' : 'The passphrase opens none of the encrypted volume\'s key slots');
}

async function openKeyslot(header: Luks2Header, slot: Luks2Keyslot, readAt: VolumeReadAt, passphrase: Uint8Array): Promise<Uint8Array | null> {
  const slotKey = await derive(slot, passphrase);
  const materialBytes = slot.keyBytes * slot.stripes;
  const stored = await readAt(slot.areaOffset, Math.ceil(materialBytes / 512) * 512);
  const cipher = createSectorCipher(slot.areaCipher, slotKey);
  cipher.decryptSectors(stored, 0);
  cipher.close();
  slotKey.fill(0);
  const candidate = afMerge(stored.subarray(0, materialBytes), slot.keyBytes, slot.stripes, slot.afHash);
  stored.fill(0);
  const { digest } = header;
  const computed = pbkdf2(digest.hash, candidate, digest.salt, digest.iterations, digest.digest.length);
  const matches = nodeCrypto().timingSafeEqual(computed, digest.digest);
  computed.fill(0);
  if (matches) return candidate;
  candidate.fill(0);
  return null;
}

async function derive(slot: Luks2Keyslot, passphrase: Uint8Array): Promise<Uint8Array> {
  const { kdf } = slot;
  const length = slot.areaCipher.keyBytes;
  if (kdf.type === 'pbkdf2') return pbkdf2(kdf.hash, passphrase, kdf.salt, kdf.iterations, length);
  return argon2({ kind: kdf.type, passphrase, salt: kdf.salt, time: kdf.time, memoryKiB: kdf.memoryKiB, parallel: kdf.parallel, length });
}
