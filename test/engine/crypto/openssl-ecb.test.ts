/**
 * AES-ECB through OpenSSL called directly (openssl-ecb.ts) must give exactly node:crypto's bytes,
 * in place and into another buffer, for every key size and both directions; refuse what it cannot
 * take with a typed error; and refuse use after close() (which frees the context, so a call after
 * it must never reach OpenSSL).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { opensslEcb } from '../../../src/shared/qcow2/crypto/openssl-ecb.ts';
import { thrownQcow2Error } from '../../helpers/outcomes.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

function nodeEcb(key: Uint8Array, direction: 'encrypt' | 'decrypt', input: Uint8Array): Buffer {
  const algorithm = `aes-${key.length * 8}-ecb`;
  const cipher = direction === 'encrypt' ? createCipheriv(algorithm, key, null) : createDecipheriv(algorithm, key, null);
  cipher.setAutoPadding(false);
  return cipher.update(input);
}

describe('AES-ECB through OpenSSL called directly', () => {
  it.each([16, 24, 32].flatMap((keyBytes) => (['encrypt', 'decrypt'] as const).map((direction) => [keyBytes * 8, direction, keyBytes] as const)))(
    'AES-%i %s gives node:crypto\'s bytes, in place and into another buffer, call after call',
    (_bits, direction, keyBytes) => {
      const random = new SeededRandom(keyBytes + direction.length);
      const key = random.bytes(keyBytes);
      const ecb = opensslEcb(key, direction);
      if (ecb === null) throw new Error('OpenSSL cannot be called directly here');
      for (const length of [16, 512, 65536, 16 * 1000]) {
        const input = random.bytes(length);
        const expected = nodeEcb(key, direction, input);
        const output = new Uint8Array(length + 32).fill(0xee);
        ecb.blocksInto(input, output);
        expect(Buffer.from(output.subarray(0, length)).equals(expected)).toBe(true);
        // Nothing past the input's length is written.
        expect(output.subarray(length).every((byte) => byte === 0xee)).toBe(true);
        // In place, from a view at an odd offset of a larger buffer.
        const host = new Uint8Array(length + 3);
        host.set(input, 3);
        const view = host.subarray(3);
        ecb.blocksInto(view, view);
        expect(Buffer.from(view).equals(expected)).toBe(true);
      }
      ecb.close();
    },
  );

  it('refuses partial blocks, too little room and use after close with typed errors; bad key sizes get no context', () => {
    const ecb = opensslEcb(new Uint8Array(32), 'encrypt');
    if (ecb === null) throw new Error('OpenSSL cannot be called directly here');
    expect(thrownQcow2Error(() => ecb.blocksInto(new Uint8Array(20), new Uint8Array(32))).code).toBe('INTERNAL');
    expect(thrownQcow2Error(() => ecb.blocksInto(new Uint8Array(32), new Uint8Array(16))).code).toBe('INTERNAL');
    ecb.blocksInto(new Uint8Array(0), new Uint8Array(0));
    ecb.close();
    ecb.close();
    expect(thrownQcow2Error(() => ecb.blocksInto(new Uint8Array(16), new Uint8Array(16))).code).toBe('INTERNAL');
    expect(opensslEcb(new Uint8Array(20), 'encrypt')).toBeNull();
  });
});
