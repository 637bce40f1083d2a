/**
 * qcow2's original encryption (crypt_method 1; QEMU crypto/block-qcow.c): the key is the first 16
 * bytes of the passphrase (UTF-8), zero-padded, and each 512-byte sector is AES-128-CBC with the
 * IV plain64 of its GUEST sector number. There is no key check: a wrong passphrase reads garbage.
 * (qcow2.txt's mention of 256-bit keys is wrong; QEMU 0.9 to 7.2 use 128.)
 */
import { createSectorCipher, type SectorCipher } from './sector-cipher.ts';

export const LEGACY_AES_KEY_BYTES = 16;

export function legacyAesKey(passphrase: string | Uint8Array): Uint8Array {
  const bytes = typeof passphrase === 'string' ? new TextEncoder().encode(passphrase) : passphrase;
  const key = new Uint8Array(LEGACY_AES_KEY_BYTES);
  key.set(bytes.subarray(0, LEGACY_AES_KEY_BYTES));
  if (typeof passphrase === 'string') bytes.fill(0);
  return key;
}

/** The sector cipher for a legacy AES image; sectors are guest offset / 512. */
export function legacyAesSectorCipher(passphrase: string | Uint8Array): SectorCipher {
  const key = legacyAesKey(passphrase);
  try {
    return createSectorCipher({ mode: 'cbc', ivGenerator: 'plain64', ivHash: null }, key);
  } finally {
    key.fill(0);
  }
}
