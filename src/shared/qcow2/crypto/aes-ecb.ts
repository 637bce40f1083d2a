/**
 * AES as a block function for whole runs of 16-byte blocks: XTS, CBC and ESSIV are built on it so
 * that one native call covers many sectors (a node:crypto cipher object per 512-byte sector costs
 * ten times the AES itself). Through OpenSSL directly where it can be called (openssl-ecb.ts: into
 * the caller's buffer, no garbage); else through node:crypto (OpenSSL, AES-NI): one long-lived ECB
 * cipher object per key and direction, padding off, fed call after call (ECB keeps no state between
 * calls), its output copied over. close() frees OpenSSL's copy of the key where this holds the
 * context; a node:crypto object keeps it until collected.
 */
import type { Cipheriv, Decipheriv } from 'node:crypto';
import { nodeCrypto } from './node-crypto.ts';
import { opensslEcb } from './openssl-ecb.ts';
import { Qcow2Error } from '../errors.ts';

export const AES_BLOCK_BYTES = 16;

export interface AesEcb {
  /** AES of every 16-byte block of `input` (a multiple of 16 bytes) into `output`: at least as long, and may be `input` itself. */
  blocksInto(input: Uint8Array, output: Uint8Array): void;
  close(): void;
}

/** Tests turn the direct OpenSSL calls off to check that node:crypto gives the same bytes. */
export const aesSettings = { callOpensslDirectly: true };

/** 'aes-256-ecb' and the like for a 16-, 24- or 32-byte key. */
export function aesAlgorithm(keyBytes: number, mode: 'ecb' | 'cbc'): string {
  if (keyBytes !== 16 && keyBytes !== 24 && keyBytes !== 32) throw new Qcow2Error('INVALID_ARGUMENT', `AES takes a 16-, 24- or 32-byte key, not ${keyBytes} bytes`);
  return `aes-${keyBytes * 8}-${mode}`;
}

export function aesEcb(key: Uint8Array, direction: 'encrypt' | 'decrypt'): AesEcb {
  const algorithm = aesAlgorithm(key.length, 'ecb');
  const direct = aesSettings.callOpensslDirectly ? opensslEcb(key, direction) : null;
  if (direct !== null) return direct;
  let cipher: Cipheriv | Decipheriv | null = direction === 'encrypt' ? nodeCrypto().createCipheriv(algorithm, key, null) : nodeCrypto().createDecipheriv(algorithm, key, null);
  cipher.setAutoPadding(false);
  return {
    blocksInto(input, output) {
      if (cipher === null) throw new Qcow2Error('INTERNAL', 'An AES context was used after it was closed');
      const result = cipher.update(input);
      if (result.length !== input.length || output.length < input.length) throw new Qcow2Error('INTERNAL', `AES-ECB returned ${result.length} bytes for ${input.length}, into room for ${output.length}`);
      output.set(result);
    },
    close() {
      cipher = null;
    },
  };
}

/** Whether this thread's AES goes to OpenSSL directly (tests check the direct path is the one taken). */
export function aesCallsOpensslDirectly(): boolean {
  const probe = opensslEcb(new Uint8Array(16), 'encrypt');
  probe?.close();
  return probe !== null;
}
