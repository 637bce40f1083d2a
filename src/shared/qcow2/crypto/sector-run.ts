/**
 * What every per-sector cipher shares: the SectorCipher interface the disk ciphers use, and the
 * check of a run of sectors (whole 512-byte sectors, sector numbers a JavaScript number holds
 * exactly) before any byte of it changes.
 */
import { Qcow2Error } from '../errors.ts';

export const SECTOR_BYTES = 512;

/** Encrypts or decrypts whole 512-byte sectors in place; a sector's IV or tweak comes from its number. */
export interface SectorCipher {
  encryptSectors(data: Uint8Array, firstSector: number): void;
  decryptSectors(data: Uint8Array, firstSector: number): void;
  /** Frees the AES contexts (OpenSSL clears its key copies; node:crypto's objects keep theirs until collected). */
  close(): void;
}

export function checkSectorRun(data: Uint8Array, firstSector: number): number {
  if (data.length % SECTOR_BYTES !== 0) throw new Qcow2Error('INVALID_ARGUMENT', `Encryption works on whole 512-byte sectors, not ${data.length} bytes`);
  const count = data.length / SECTOR_BYTES;
  if (!Number.isSafeInteger(firstSector) || firstSector < 0 || firstSector + count > Number.MAX_SAFE_INTEGER) {
    throw new Qcow2Error('INVALID_ARGUMENT', `Sector number ${firstSector} is out of range`);
  }
  return count;
}

/** The typed-array tweak and chaining code reads words in the host's byte order; Node runs Cowbell on little-endian hosts only. */
export function assertLittleEndian(): void {
  if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) throw new Qcow2Error('UNSUPPORTED_FEATURE', 'Encrypted images need a little-endian processor');
}

export function closedError(): Qcow2Error {
  return new Qcow2Error('INTERNAL', 'A sector cipher was used after it was closed');
}

/** 32-bit words over `bytes` (a multiple of 4 long): a view where aligned, else a copy. */
export function wordsOf(bytes: Uint8Array): Int32Array {
  if ((bytes.byteOffset & 3) === 0) return new Int32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
  return new Int32Array(new Uint8Array(bytes).buffer);
}
