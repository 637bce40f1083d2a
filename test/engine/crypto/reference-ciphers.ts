/**
 * Per-sector reference ciphers for the tests, built the slow, obvious way: one node:crypto cipher
 * object per 512-byte sector, IVs computed byte by byte. AES-192-XTS (which OpenSSL lacks) comes
 * from IEEE 1619's definition over AES-ECB, itself checked against OpenSSL's XTS at 128 and 256 bits.
 */
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';

export type Mode = 'xts' | 'cbc';
export type IvKind = 'plain' | 'plain64' | 'essiv';

export function referenceIv(kind: IvKind, key: Uint8Array, sector: number): Buffer {
  const iv = Buffer.alloc(16);
  if (kind === 'plain') iv.writeUInt32LE(sector % 2 ** 32, 0);
  else iv.writeBigUInt64LE(BigInt(sector), 0);
  if (kind !== 'essiv') return iv;
  const cipher = createCipheriv('aes-256-ecb', createHash('sha256').update(key).digest(), null);
  cipher.setAutoPadding(false);
  return cipher.update(iv);
}

const ecbCiphers = new Map<string, { update(block: Uint8Array): Buffer }>();

/** AES of one block; ECB keeps no state, so one cipher object per key and direction serves every call. */
function ecb(key: Uint8Array, block: Uint8Array, decrypt: boolean): Buffer {
  const id = `${Buffer.from(key).toString('hex')}:${decrypt}`;
  let cipher = ecbCiphers.get(id);
  if (cipher === undefined) {
    const algorithm = `aes-${key.length * 8}-ecb`;
    const created = decrypt ? createDecipheriv(algorithm, key, null) : createCipheriv(algorithm, key, null);
    created.setAutoPadding(false);
    cipher = created;
    ecbCiphers.set(id, cipher);
  }
  return cipher.update(block);
}

/** XTS of one sector from its definition: T = E_K2(IV), then C_j = E_K1(P_j ⊕ T·α^j) ⊕ T·α^j. */
export function definitionXts(key: Uint8Array, iv: Uint8Array, sector: Uint8Array, decrypt: boolean): Buffer {
  const half = key.length / 2;
  const tweak = ecb(key.subarray(half), iv, false);
  const out = Buffer.alloc(sector.length);
  for (let block = 0; block < sector.length / 16; block++) {
    const input = Buffer.alloc(16);
    for (let index = 0; index < 16; index++) input[index] = (sector[block * 16 + index] as number) ^ (tweak[index] as number);
    const middle = ecb(key.subarray(0, half), input, decrypt);
    for (let index = 0; index < 16; index++) out[block * 16 + index] = (middle[index] as number) ^ (tweak[index] as number);
    let carry = 0;
    for (let index = 0; index < 16; index++) {
      const next = (tweak[index] as number) >> 7;
      tweak[index] = (((tweak[index] as number) << 1) | carry) & 0xff;
      carry = next;
    }
    if (carry) tweak[0] = (tweak[0] as number) ^ 0x87;
  }
  return out;
}

export function referenceSectors(mode: Mode, ivKind: IvKind, key: Uint8Array, data: Uint8Array, firstSector: number, decrypt: boolean): Uint8Array {
  const out = new Uint8Array(data.length);
  for (let index = 0; index * 512 < data.length; index++) {
    const sector = data.subarray(index * 512, index * 512 + 512);
    const iv = referenceIv(ivKind, key, firstSector + index);
    let result: Uint8Array;
    if (mode === 'xts' && key.length === 48) result = definitionXts(key, iv, sector, decrypt);
    else {
      const algorithm = mode === 'xts' ? `aes-${key.length * 4}-xts` : `aes-${key.length * 8}-cbc`;
      const cipher = decrypt ? createDecipheriv(algorithm, key, iv) : createCipheriv(algorithm, key, iv);
      cipher.setAutoPadding(false);
      result = cipher.update(sector);
    }
    out.set(result, index * 512);
  }
  return out;
}
