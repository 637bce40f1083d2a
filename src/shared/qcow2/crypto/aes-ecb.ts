/**
 * AES as a block function for whole runs of 16-byte blocks, through node:crypto (OpenSSL, AES-NI):
 * one long-lived ECB cipher object per key and direction, padding off, fed call after call (ECB
 * keeps no state between calls). XTS, CBC and ESSIV are built on it so that one native call covers
 * many sectors: a node:crypto cipher object per 512-byte sector costs ten times the AES itself.
 * OpenSSL keeps its own copy of the key; dropping the object is all JavaScript can do to it.
 */
import type { Cipheriv, Decipheriv } from 'node:crypto';
import { nodeCrypto } from './node-crypto.ts';
import { Qcow2Error } from '../errors.ts';

export const AES_BLOCK_BYTES = 16;

export interface AesEcb {
  /** AES of every 16-byte block of `input` (a multiple of 16 bytes), in a new buffer of the same length. */
  blocks(input: Uint8Array): Uint8Array;
}

/** 'aes-256-ecb' and the like for a 16-, 24- or 32-byte key. */
export function aesAlgorithm(keyBytes: number, mode: 'ecb' | 'cbc'): string {
  if (keyBytes !== 16 && keyBytes !== 24 && keyBytes !== 32) throw new Qcow2Error('INVALID_ARGUMENT', `AES takes a 16-, 24- or 32-byte key, not ${keyBytes} bytes`);
  return `aes-${keyBytes * 8}-${mode}`;
}

export function aesEcb(key: Uint8Array, direction: 'encrypt' | 'decrypt'): AesEcb {
  const algorithm = aesAlgorithm(key.length, 'ecb');
  const cipher: Cipheriv | Decipheriv = direction === 'encrypt' ? nodeCrypto().createCipheriv(algorithm, key, null) : nodeCrypto().createDecipheriv(algorithm, key, null);
  cipher.setAutoPadding(false);
  return {
    blocks(input) {
      const output = cipher.update(input);
      if (output.length !== input.length) throw new Qcow2Error('INTERNAL', `AES-ECB returned ${output.length} bytes for ${input.length}`);
      return output;
    },
  };
}
