import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { afMerge, afSplit } from '../../../src/shared/qcow2/crypto/af-splitter.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { LuksHash } from '../../../src/shared/qcow2/format/luks-header.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const HASHES: LuksHash[] = ['sha1', 'sha224', 'sha256', 'sha384', 'sha512'];

describe('anti-forensic splitter', () => {
  it.each(HASHES)('merges what it split back into the key (%s; 16- to 64-byte keys; 1, 2, 7 and 300 stripes, and 4000 of 64 bytes)', (hash) => {
    const random = new SeededRandom(hash.length);
    for (const keyBytes of [16, 24, 32, 48, 64]) {
      for (const stripes of keyBytes === 64 ? [1, 2, 7, 300, 4000] : [1, 2, 7, 300]) {
        const key = random.bytes(keyBytes);
        const material = afSplit(key, stripes, hash);
        expect(material.length).toBe(keyBytes * stripes);
        expect(afMerge(material, keyBytes, stripes, hash)).toEqual(key);
      }
    }
  });

  it('spreads the key over every stripe: two splits differ, and one changed byte anywhere loses it', () => {
    const key = new SeededRandom(5).bytes(64);
    const first = afSplit(key, 4000, 'sha256');
    const second = afSplit(key, 4000, 'sha256');
    expect(Buffer.from(first).equals(Buffer.from(second))).toBe(false);
    for (const position of [0, 1000, 64 * 2000 + 3, 64 * 3999 - 1, 64 * 4000 - 1]) {
      const damaged = first.slice();
      damaged[position] = (damaged[position] as number) ^ 1;
      expect(afMerge(damaged, 64, 4000, 'sha256')).not.toEqual(key);
    }
  });

  it('diffuses as LUKS does: each digest-sized piece hashed after its big-endian index, the last piece cut short', () => {
    // Two stripes: key = diffuse(stripe 0) ⊕ stripe 1. A 48-byte block with sha256 is a 32-byte and a 16-byte piece.
    const random = new SeededRandom(9);
    const stripe0 = random.bytes(48);
    const stripe1 = random.bytes(48);
    const piece = (index: number, bytes: Uint8Array): Buffer => createHash('sha256').update(Uint8Array.of(0, 0, 0, index)).update(bytes).digest();
    const diffused = Buffer.concat([piece(0, stripe0.subarray(0, 32)), piece(1, stripe0.subarray(32)).subarray(0, 16)]);
    const expected = diffused.map((byte, index) => byte ^ (stripe1[index] as number));
    const material = new Uint8Array(96);
    material.set(stripe0, 0);
    material.set(stripe1, 48);
    expect(Buffer.from(afMerge(material, 48, 2, 'sha256')).equals(Buffer.from(expected))).toBe(true);
  });

  it('refuses too little material and zero stripes with INVALID_ARGUMENT', () => {
    const code = (action: () => unknown): string | undefined => {
      try {
        action();
      } catch (error) {
        return error instanceof Qcow2Error ? error.code : 'untyped';
      }
      return undefined;
    };
    expect(code(() => afMerge(new Uint8Array(100), 64, 2, 'sha256'))).toBe('INVALID_ARGUMENT');
    expect(code(() => afMerge(new Uint8Array(64), 64, 0, 'sha256'))).toBe('INVALID_ARGUMENT');
    expect(code(() => afSplit(new Uint8Array(64), 0, 'sha256'))).toBe('INVALID_ARGUMENT');
  });
});
