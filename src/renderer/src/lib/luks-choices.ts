/**
 * The LUKS settings Encrypt… offers: ciphers qemu-img 7.2 itself creates (64-bit IVs or ESSIV, so
 * a disk larger than 2 TiB never reuses an IV), PBKDF2 hashes, and how long unlocking takes here.
 * QEMU's defaults come first and are preselected.
 */
import type { JobArgs } from '../../../shared/ipc/contract.ts';

export type LuksCipher = NonNullable<JobArgs<'image.encrypt'>['cipher']>;
export type LuksHashName = NonNullable<JobArgs<'image.encrypt'>['hash']>;

export interface CipherChoice {
  /** As qemu-img and cryptsetup name it: aes-256-xts-plain64. */
  id: string;
  label: string;
  cipher: LuksCipher;
}

export const CIPHER_CHOICES: readonly CipherChoice[] = [
  { id: 'aes-256-xts-plain64', label: 'AES-256 XTS, plain64 — QEMU’s default', cipher: { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' } },
  { id: 'aes-128-xts-plain64', label: 'AES-128 XTS, plain64 — a little faster', cipher: { aesKeyBits: 128, mode: 'xts', ivGenerator: 'plain64' } },
  { id: 'aes-192-xts-plain64', label: 'AES-192 XTS, plain64', cipher: { aesKeyBits: 192, mode: 'xts', ivGenerator: 'plain64' } },
  { id: 'aes-256-cbc-essiv:sha256', label: 'AES-256 CBC, ESSIV (SHA-256) — for older tools', cipher: { aesKeyBits: 256, mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha256' } },
  { id: 'aes-128-cbc-essiv:sha256', label: 'AES-128 CBC, ESSIV (SHA-256) — for older tools', cipher: { aesKeyBits: 128, mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha256' } },
  { id: 'aes-256-cbc-plain64', label: 'AES-256 CBC, plain64', cipher: { aesKeyBits: 256, mode: 'cbc', ivGenerator: 'plain64' } },
];

export const HASH_CHOICES: readonly { id: LuksHashName; label: string }[] = [
  { id: 'sha256', label: 'SHA-256 — QEMU’s default' },
  { id: 'sha512', label: 'SHA-512' },
];

/** QEMU's encrypt.iter-time: PBKDF2 is tuned on this machine to take this long per unlock. */
export const UNLOCK_TIME_CHOICES: readonly { ms: number; label: string }[] = [
  { ms: 2000, label: '2 seconds — QEMU’s default' },
  { ms: 1000, label: '1 second' },
  { ms: 5000, label: '5 seconds' },
];

export interface EncryptSettings {
  cipherId: string;
  hash: LuksHashName;
  iterTimeMs: number;
}

export function defaultEncryptSettings(): EncryptSettings {
  return { cipherId: CIPHER_CHOICES[0]?.id ?? 'aes-256-xts-plain64', hash: 'sha256', iterTimeMs: 2000 };
}

/** The job's cipher for a choice; QEMU's default for an id that is not offered. */
export function cipherFor(id: string): LuksCipher {
  const choice = CIPHER_CHOICES.find((candidate) => candidate.id === id) ?? CIPHER_CHOICES[0];
  return { ...(choice?.cipher ?? { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' }) };
}
