import { createCipheriv } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { aesCallsOpensslDirectly, aesSettings } from '../../../src/shared/qcow2/crypto/aes-ecb.ts';
import { createSectorCipher } from '../../../src/shared/qcow2/crypto/sector-cipher.ts';
import { xtsSimd } from '../../../src/shared/qcow2/crypto/xts-simd.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { definitionXts, referenceIv, referenceSectors, type IvKind, type Mode } from './reference-ciphers.ts';

const COMBINATIONS: { mode: Mode; keyBytes: number; ivKind: IvKind }[] = [];
for (const mode of ['xts', 'cbc'] as const) {
  for (const aesBytes of [16, 24, 32]) {
    for (const ivKind of ['plain', 'plain64', 'essiv'] as const) COMBINATIONS.push({ mode, keyBytes: mode === 'xts' ? aesBytes * 2 : aesBytes, ivKind });
  }
}
const name = (combination: (typeof COMBINATIONS)[number]): string =>
  `aes-${(combination.mode === 'xts' ? combination.keyBytes / 2 : combination.keyBytes) * 8}-${combination.mode}-${combination.ivKind}`;

/** Sector counts around each implementation's run sizes (128 for XTS, 1024 for CBC), and sector numbers around 2^32. */
const SECTOR_COUNTS = [1, 2, 127, 128, 129, 300, 1025];
const FIRST_SECTORS = [0, 7, 2 ** 32 - 5, 2 ** 32, 2 ** 40 + 3, 2 ** 52 - 2000];

function ivHash(ivKind: IvKind): 'sha256' | null {
  return ivKind === 'essiv' ? 'sha256' : null;
}

describe('the reference XTS', () => {
  it('from its definition matches OpenSSL aes-128-xts and aes-256-xts', () => {
    const random = new SeededRandom(1);
    for (const keyBytes of [32, 64]) {
      const key = random.bytes(keyBytes);
      const sector = random.bytes(512);
      const iv = referenceIv('plain64', key, 2 ** 33 + 1);
      const openssl = createCipheriv(`aes-${keyBytes * 4}-xts`, key, iv).update(sector);
      expect(Buffer.from(definitionXts(key, iv, sector, false)).equals(openssl)).toBe(true);
    }
  });
});

describe('sector cipher', () => {
  const paths = xtsSimd() === null ? [false] : [true, false];
  afterEach(() => {
    aesSettings.callOpensslDirectly = true;
  });

  it('has WebAssembly SIMD on this Node (else XTS falls back to the slower JavaScript path)', () => {
    expect(xtsSimd()).not.toBeNull();
  });

  it('calls OpenSSL directly on this Node (else every AES run leaves a new buffer behind, for node:crypto)', () => {
    expect(aesCallsOpensslDirectly()).toBe(true);
  });

  describe.each(COMBINATIONS.map((combination) => [name(combination), combination] as const))('%s', (_label, { mode, keyBytes, ivKind }) => {
    it.each(paths.flatMap((simd) => [true, false].map((direct) => [simd ? 'SIMD' : 'JavaScript', direct ? 'OpenSSL called directly' : 'node:crypto', simd, direct] as const)))(
      'encrypts and decrypts byte for byte as per-sector node:crypto does, at random sector numbers (%s path, AES through %s)',
      (_path, _aes, simd, direct) => {
        aesSettings.callOpensslDirectly = direct;
        const random = new SeededRandom(keyBytes * 7 + ivKind.length + (simd ? 1 : 0) + (mode === 'xts' ? 100 : 0));
        const key = random.bytes(keyBytes);
        const cipher = createSectorCipher({ mode, ivGenerator: ivKind, ivHash: ivHash(ivKind) }, key, { simd });
        const starts = [...FIRST_SECTORS, random.int(0, 2 ** 31) * 1024 + random.int(0, 1024)];
        for (const [round, firstSector] of starts.entries()) {
          const count = SECTOR_COUNTS[round % SECTOR_COUNTS.length] as number;
          const plain = random.bytes(count * 512);
          const expected = referenceSectors(mode, ivKind, key, plain, firstSector, false);
          const data = plain.slice();
          cipher.encryptSectors(data, firstSector);
          expect(Buffer.from(data).equals(expected)).toBe(true);
          cipher.decryptSectors(data, firstSector);
          expect(Buffer.from(data).equals(plain)).toBe(true);
        }
        cipher.close();
      },
    );
  });

  it('plain wraps at 2^32 sectors where plain64 does not', () => {
    const random = new SeededRandom(3);
    const key = random.bytes(64);
    const plain = random.bytes(512);
    const encrypt = (ivGenerator: 'plain' | 'plain64', sector: number): Uint8Array => {
      const data = plain.slice();
      createSectorCipher({ mode: 'xts', ivGenerator, ivHash: null }, key).encryptSectors(data, sector);
      return data;
    };
    expect(encrypt('plain', 2 ** 32 + 5)).toEqual(encrypt('plain', 5));
    expect(encrypt('plain64', 2 ** 32 + 5)).not.toEqual(encrypt('plain64', 5));
    expect(encrypt('plain', 5)).toEqual(encrypt('plain64', 5));
  });

  it.each(COMBINATIONS.filter((c) => c.ivKind === 'plain64').map((combination) => [name(combination), combination] as const))(
    'gives the same bytes for a misaligned buffer and for a run split into pieces in any order (%s)',
    (_label, { mode, keyBytes }) => {
      const random = new SeededRandom(keyBytes);
      const key = random.bytes(keyBytes);
      const plain = random.bytes(1500 * 512);
      const whole = plain.slice();
      createSectorCipher({ mode, ivGenerator: 'plain64', ivHash: null }, key).encryptSectors(whole, 1000);
      const backing = new Uint8Array(plain.length + 1);
      const misaligned = backing.subarray(1);
      misaligned.set(plain);
      const cipher = createSectorCipher({ mode, ivGenerator: 'plain64', ivHash: null }, key, { simd: false });
      cipher.encryptSectors(misaligned, 1000);
      expect(Buffer.from(misaligned).equals(whole)).toBe(true);
      // Decrypt in pieces, last first: CBC's chaining state must not leak from one call into the next.
      const pieces = [[700, 1500], [0, 1], [1, 129], [129, 700]] as const;
      for (const [start, end] of pieces) cipher.decryptSectors(misaligned.subarray(start * 512, end * 512), 1000 + start);
      expect(Buffer.from(misaligned).equals(plain)).toBe(true);
    },
  );

  it('refuses partial sectors, bad sector numbers, wrong key sizes and unknown modes with typed errors', () => {
    const cipher = createSectorCipher({ mode: 'xts', ivGenerator: 'plain64', ivHash: null }, new Uint8Array(64));
    const codeOf = (action: () => unknown): string | undefined => {
      try {
        action();
      } catch (error) {
        return error instanceof Qcow2Error ? error.code : 'untyped';
      }
      return undefined;
    };
    expect(codeOf(() => cipher.decryptSectors(new Uint8Array(100), 0))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => cipher.decryptSectors(new Uint8Array(512), -1))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => cipher.decryptSectors(new Uint8Array(512), 0.5))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => cipher.decryptSectors(new Uint8Array(1024), Number.MAX_SAFE_INTEGER))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => createSectorCipher({ mode: 'xts', ivGenerator: 'plain64', ivHash: null }, new Uint8Array(16)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => createSectorCipher({ mode: 'ecb', ivGenerator: 'plain64', ivHash: null }, new Uint8Array(32)))).toBe('UNSUPPORTED_FEATURE');
    expect(codeOf(() => createSectorCipher({ mode: 'cbc', ivGenerator: 'benbi' as 'plain', ivHash: null }, new Uint8Array(32)))).toBe('UNSUPPORTED_FEATURE');
    expect(codeOf(() => createSectorCipher({ mode: 'cbc', ivGenerator: 'essiv', ivHash: 'sha1' }, new Uint8Array(32)))).toBe('UNSUPPORTED_FEATURE');
    cipher.close();
    expect(codeOf(() => cipher.decryptSectors(new Uint8Array(512), 0))).toBe('INTERNAL');
  });
});

describe('sector cipher with larger data units (LUKS2 sector_size)', () => {
  const paths = xtsSimd() === null ? [false] : [true, false];

  it.each(paths.flatMap((simd) => [1024, 2048, 4096].map((unitBytes) => [simd ? 'SIMD' : 'JavaScript', unitBytes, simd] as const)))(
    'XTS over whole %s-path %i-byte units, each with its first 512-byte sector\'s IV, equals OpenSSL XTS over each unit',
    (_path, unitBytes, simd) => {
      const random = new SeededRandom(unitBytes + (simd ? 1 : 0));
      for (const keyBytes of [32, 64]) {
        for (const ivKind of ['plain64', 'essiv'] as const) {
          const key = random.bytes(keyBytes);
          const cipher = createSectorCipher({ mode: 'xts', ivGenerator: ivKind, ivHash: ivHash(ivKind) }, key, { simd, unitBytes });
          // Unit counts around the 128-sector run (16 units of 4096 bytes) and sector numbers past 2^32.
          const unitSectors = unitBytes / 512;
          for (const [units, firstSector] of [[1, 0], [3, 5 * unitSectors], [16, 2 ** 32 - unitSectors], [17, 77], [40, 2 ** 40 + 9 * unitSectors]] as const) {
            const plain = random.bytes(units * unitBytes);
            const expected = Buffer.concat(
              Array.from({ length: units }, (_, index) =>
                createCipheriv(`aes-${keyBytes * 4}-xts`, key, referenceIv(ivKind, key, firstSector + index * unitSectors)).update(plain.subarray(index * unitBytes, (index + 1) * unitBytes)),
              ),
            );
            const data = plain.slice();
            cipher.encryptSectors(data, firstSector);
            expect(Buffer.from(data).equals(expected)).toBe(true);
            cipher.decryptSectors(data, firstSector);
            expect(Buffer.from(data).equals(Buffer.from(plain))).toBe(true);
          }
          cipher.close();
        }
      }
    },
  );

  it('refuses what dm-crypt never does: CBC with large units, units other than 512–4096, a run that ends inside a unit', () => {
    const key = new Uint8Array(64);
    expect(() => createSectorCipher({ mode: 'cbc', ivGenerator: 'plain64', ivHash: null }, key.subarray(0, 32), { unitBytes: 4096 })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_FEATURE' }));
    expect(() => createSectorCipher({ mode: 'xts', ivGenerator: 'plain64', ivHash: null }, key, { unitBytes: 8192 })).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_FEATURE' }));
    const cipher = createSectorCipher({ mode: 'xts', ivGenerator: 'plain64', ivHash: null }, key, { unitBytes: 4096 });
    expect(() => cipher.decryptSectors(new Uint8Array(4096 + 512), 0)).toThrow(Qcow2Error);
  });
});
