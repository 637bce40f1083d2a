/**
 * Argon2i and Argon2id (RFC 9106), the key derivation LUKS2 key slots use by default. Node's own
 * (OpenSSL 3.2 and later: Node 24) where it has one, as it runs the lanes on several threads;
 * else hash-wasm's WebAssembly build (Electron's Node is built on BoringSSL, which has no Argon2),
 * loaded only then. Both give the same bytes (test/engine/crypto/argon2.test.ts).
 */
import { Qcow2Error } from '../errors.ts';
import { nodeCrypto } from './node-crypto.ts';

export type Argon2Kind = 'argon2i' | 'argon2id';

export interface Argon2Params {
  kind: Argon2Kind;
  passphrase: Uint8Array;
  salt: Uint8Array;
  /** Passes over the memory (cryptsetup's "time cost"). */
  time: number;
  memoryKiB: number;
  /** Lanes (cryptsetup's "threads"). */
  parallel: number;
  length: number;
}

export type Argon2Implementation = 'native' | 'wasm';

/**
 * What a key slot may ask before it is taken as damaged (or hostile) rather than slow: cryptsetup
 * caps memory at 4 GiB and lanes at 16; a hash of 1 GiB over 64 passes already takes minutes here.
 */
export const ARGON2_MAX_MEMORY_KIB = 4 * 1024 * 1024;
export const ARGON2_MAX_PARALLEL = 16;
const ARGON2_MAX_WORK_KIB = 64 * 1024 * 1024;

/** Refuses parameters no real key slot has (FILESYSTEM_UNSUPPORTED names them). */
export function checkArgon2Params(params: Pick<Argon2Params, 'time' | 'memoryKiB' | 'parallel' | 'length'> & { salt?: Uint8Array }): void {
  const { time, memoryKiB, parallel, length } = params;
  if (params.salt !== undefined && (params.salt.length < 8 || params.salt.length > 1024)) throw new Qcow2Error('FILESYSTEM_CORRUPT', `An Argon2 salt of ${params.salt.length} bytes (8 to 1024 are valid)`);
  const whole = (value: number, low: number, high: number): boolean => Number.isSafeInteger(value) && value >= low && value <= high;
  if (!whole(parallel, 1, ARGON2_MAX_PARALLEL) || !whole(memoryKiB, 8 * parallel, ARGON2_MAX_MEMORY_KIB) || !whole(time, 1, 0xffffffff) || !whole(length, 4, 1024) || time * memoryKiB > ARGON2_MAX_WORK_KIB) {
    throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `Argon2 with ${time} passes over ${memoryKiB} KiB in ${parallel} lanes is past what Cowbell computes (up to ${ARGON2_MAX_MEMORY_KIB} KiB, ${ARGON2_MAX_PARALLEL} lanes, 64 GiB of passes)`);
  }
}

/** Which implementation argon2() uses here. */
export function argon2Implementation(): Argon2Implementation {
  return typeof nodeCrypto().argon2 === 'function' ? 'native' : 'wasm';
}

export async function argon2(params: Argon2Params, implementation: Argon2Implementation = argon2Implementation()): Promise<Uint8Array> {
  checkArgon2Params(params);
  return implementation === 'native' ? nativeArgon2(params) : wasmArgon2(params);
}

function nativeArgon2(params: Argon2Params): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    nodeCrypto().argon2(
      params.kind,
      { message: params.passphrase, nonce: params.salt, parallelism: params.parallel, tagLength: params.length, memory: params.memoryKiB, passes: params.time },
      (error, key) => {
        if (error !== null) reject(new Qcow2Error('FILESYSTEM_UNSUPPORTED', `Argon2 over ${params.memoryKiB} KiB could not be computed here: ${error.message}`));
        else resolve(new Uint8Array(key.buffer, key.byteOffset, key.length));
      },
    );
  });
}

async function wasmArgon2(params: Argon2Params): Promise<Uint8Array> {
  const { argon2i, argon2id } = await import('hash-wasm');
  const options = { password: params.passphrase, salt: params.salt, parallelism: params.parallel, iterations: params.time, memorySize: params.memoryKiB, hashLength: params.length, outputType: 'binary' as const };
  try {
    return await (params.kind === 'argon2i' ? argon2i(options) : argon2id(options));
  } catch (error) {
    // WebAssembly's memory is at most 4 GiB, and the process may not have that much to give.
    throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `Argon2 over ${params.memoryKiB} KiB could not be computed here: ${error instanceof Error ? error.message : String(error)}`);
  }
}
