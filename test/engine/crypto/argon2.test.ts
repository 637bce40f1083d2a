/**
 * Argon2 both ways Cowbell computes it (Node's OpenSSL where present, hash-wasm's WebAssembly
 * otherwise, as in Electron): outputs of the reference implementation's command line (Debian's
 * `argon2` package, version 0x13) for a known passphrase and salt, and the two implementations
 * agreeing on random inputs.
 */
import { describe, expect, it } from 'vitest';
import { argon2, argon2Implementation, checkArgon2Params, type Argon2Kind } from '../../../src/shared/qcow2/crypto/argon2.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const encoder = new TextEncoder();
const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

describe('argon2', () => {
  it('has the native implementation on the Node that runs the tests (Electron uses the WebAssembly one)', () => {
    expect(argon2Implementation()).toBe('native');
  });

  it.each(['native', 'wasm'] as const)('%s: the same bytes as the other implementation for random inputs', async (implementation) => {
    const random = new SeededRandom(implementation.length);
    for (const kind of ['argon2i', 'argon2id'] as Argon2Kind[]) {
      for (let round = 0; round < 4; round++) {
        const params = { kind, passphrase: random.bytes(random.int(0, 40)), salt: random.bytes(32), time: random.int(1, 5), memoryKiB: 64 * random.int(1, 40), parallel: random.int(1, 4), length: random.int(16, 64) };
        const other = implementation === 'native' ? 'wasm' : 'native';
        expect(hex(await argon2(params, implementation))).toBe(hex(await argon2(params, other)));
      }
    }
  });

  it('matches the reference outputs for a known passphrase and salt', async () => {
    // `echo -n password | argon2 somesalt -t 2 -m 16 -p 4 -l 24 -i|-id` (the reference implementation's CLI).
    const base = { passphrase: encoder.encode('password'), salt: encoder.encode('somesalt'), time: 2, memoryKiB: 65536, parallel: 4, length: 24 };
    for (const implementation of ['native', 'wasm'] as const) {
      expect(hex(await argon2({ ...base, kind: 'argon2i' }, implementation))).toBe(ARGON2I_REFERENCE);
      expect(hex(await argon2({ ...base, kind: 'argon2id' }, implementation))).toBe(ARGON2ID_REFERENCE);
    }
  });

  it('WebAssembly\'s: a memory it cannot hold (4 GiB, cryptsetup\'s largest) is a typed error, not a RangeError', async () => {
    await expect(argon2({ kind: 'argon2id', passphrase: new Uint8Array(1), salt: new Uint8Array(32), time: 1, memoryKiB: 4 * 1024 * 1024, parallel: 4, length: 64 }, 'wasm')).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED' });
  });

  it('refuses parameters no key slot has, before computing anything', () => {
    for (const bad of [{ time: 0 }, { memoryKiB: 5 * 1024 * 1024 }, { parallel: 17 }, { parallel: 0 }, { time: 100, memoryKiB: 1024 * 1024 }, { length: 2 }]) {
      expect(() => checkArgon2Params({ time: 4, memoryKiB: 65536, parallel: 2, length: 32, ...bad })).toThrow(expect.objectContaining({ code: 'FILESYSTEM_UNSUPPORTED' }));
    }
    // Argon2's salt is 8 bytes or more (Node's own would throw a RangeError: found by the LUKS2 fuzz).
    expect(() => checkArgon2Params({ time: 4, memoryKiB: 65536, parallel: 2, length: 32, salt: new Uint8Array(5) })).toThrow(expect.objectContaining({ code: 'FILESYSTEM_CORRUPT' }));
  });
});

const ARGON2I_REFERENCE = '45d7ac72e76f242b20b77b9bf9bf9d5915894e669a24e6c6';
const ARGON2ID_REFERENCE = '1758c6d82577fcdafec91b88b0f2b0d09f6be2cedc247054';
