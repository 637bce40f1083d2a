/**
 * LUKS's anti-forensic splitter (LUKS1 spec §2.4, "AF-Splitter"; QEMU crypto/afsplit.c): a key of
 * n bytes is stored as `stripes` blocks of n bytes, all but the last random, the last chosen so that
 * XORing the blocks together with a hash "diffusion" after each gives the key back. Losing any
 * block (an overwritten sector) loses the key. The diffusion hashes each digest-sized piece of the
 * block, prefixed with its big-endian index, and keeps as many bytes as the piece had.
 */
import { nodeCrypto } from './node-crypto.ts';
import { Qcow2Error } from '../errors.ts';
import type { LuksHash } from '../format/luks-header.ts';

const DIGEST_BYTES: Record<LuksHash, number> = { sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64 };

/** `stripes` blocks of key.length bytes that merge back into `key`. */
export function afSplit(key: Uint8Array, stripes: number, hash: LuksHash): Uint8Array {
  checkStripes(stripes);
  const blockBytes = key.length;
  const material = new Uint8Array(blockBytes * stripes);
  nodeCrypto().randomFillSync(material, 0, blockBytes * (stripes - 1));
  const mixed = new Uint8Array(blockBytes);
  for (let stripe = 0; stripe < stripes - 1; stripe++) {
    xorInto(mixed, material.subarray(stripe * blockBytes, (stripe + 1) * blockBytes));
    diffuse(mixed, hash);
  }
  const last = material.subarray((stripes - 1) * blockBytes);
  for (let index = 0; index < blockBytes; index++) last[index] = (mixed[index] as number) ^ (key[index] as number);
  mixed.fill(0);
  return material;
}

/** The key of `keyBytes` bytes that the first keyBytes × stripes bytes of `material` hold. */
export function afMerge(material: Uint8Array, keyBytes: number, stripes: number, hash: LuksHash): Uint8Array {
  checkStripes(stripes);
  if (material.length < keyBytes * stripes) throw new Qcow2Error('INVALID_ARGUMENT', `${stripes} stripes of ${keyBytes} bytes need ${keyBytes * stripes} bytes of key material, not ${material.length}`);
  const key = new Uint8Array(keyBytes);
  for (let stripe = 0; stripe < stripes - 1; stripe++) {
    xorInto(key, material.subarray(stripe * keyBytes, (stripe + 1) * keyBytes));
    diffuse(key, hash);
  }
  xorInto(key, material.subarray((stripes - 1) * keyBytes, stripes * keyBytes));
  return key;
}

function checkStripes(stripes: number): void {
  if (!Number.isInteger(stripes) || stripes < 1) throw new Qcow2Error('INVALID_ARGUMENT', `The anti-forensic splitter needs at least one stripe, not ${stripes}`);
}

function xorInto(target: Uint8Array, source: Uint8Array): void {
  for (let index = 0; index < target.length; index++) target[index] = (target[index] as number) ^ (source[index] as number);
}

function diffuse(block: Uint8Array, hash: LuksHash): void {
  const digestBytes = DIGEST_BYTES[hash];
  const index = new Uint8Array(4);
  const indexView = new DataView(index.buffer);
  for (let piece = 0, start = 0; start < block.length; piece++, start += digestBytes) {
    const end = Math.min(start + digestBytes, block.length);
    indexView.setUint32(0, piece);
    const digest = nodeCrypto().createHash(hash).update(index).update(block.subarray(start, end)).digest();
    block.set(digest.subarray(0, end - start), start);
    digest.fill(0);
  }
}
