/**
 * AES-ECB through the OpenSSL the running program exports, called directly by koffi (io/libc.ts:
 * dlopen(NULL), Linux only): EVP_CipherUpdate writes into the caller's buffer.
 * node:crypto's update() returns a new buffer for every call, so a rewrite of an encrypted disk left
 * about as much short-lived native memory as the data it ciphered, for the collector to find late:
 * compact and convert of an encrypted 512 MiB disk peaked at 190–215 MiB (issue 18's bound is 160).
 * Node exports OpenSSL's symbols for native addons; where they cannot be found (Electron hides its
 * BoringSSL's, other platforms), this gives null and aes-ecb.ts uses node:crypto.
 * A context holds its own copy of the key until close(), which frees it (OpenSSL clears it); a
 * context dropped without close() is freed when collected.
 */
import type * as Koffi from 'koffi';
import type { AesEcb } from './aes-ecb.ts';
import { libc } from '../io/libc.ts';
import { Qcow2Error } from '../errors.ts';

interface EvpCalls {
  newContext(): unknown;
  freeContext(context: unknown): void;
  cipher: Record<16 | 24 | 32, () => unknown>;
  init(context: unknown, cipher: unknown, engine: null, key: Uint8Array, iv: null, encrypt: number): number;
  setPadding(context: unknown, padding: number): number;
  update(context: unknown, output: Uint8Array, outputLength: Int32Array, input: Uint8Array, inputLength: number): number;
}

let calls: EvpCalls | null | undefined;

/** OpenSSL's EVP calls, bound once per thread; null where they are not there to call. */
function evpCalls(): EvpCalls | null {
  if (calls !== undefined) return calls;
  calls = null;
  const loaded = libc();
  if (loaded instanceof Error) return null;
  try {
    const bind = <T>(library: Koffi.LibraryHandle, signature: string): T => library.func(signature) as unknown as T;
    const { library } = loaded;
    calls = {
      newContext: bind(library, 'void *EVP_CIPHER_CTX_new()'),
      freeContext: bind(library, 'void EVP_CIPHER_CTX_free(void *context)'),
      cipher: {
        16: bind(library, 'const void *EVP_aes_128_ecb()'),
        24: bind(library, 'const void *EVP_aes_192_ecb()'),
        32: bind(library, 'const void *EVP_aes_256_ecb()'),
      },
      init: bind(library, 'int EVP_CipherInit_ex(void *context, const void *cipher, void *engine, const uint8_t *key, const uint8_t *iv, int encrypt)'),
      setPadding: bind(library, 'int EVP_CIPHER_CTX_set_padding(void *context, int padding)'),
      update: bind(library, 'int EVP_CipherUpdate(void *context, _Out_ uint8_t *output, _Out_ int *outputLength, const uint8_t *input, int inputLength)'),
    };
  } catch {
    calls = null;
  }
  return calls;
}

/** Frees a context that was dropped without close(). */
const unclosed = new FinalizationRegistry<{ context: unknown; free: (context: unknown) => void }>(({ context, free }) => free(context));

/** An OpenSSL AES-ECB context for `key` (16, 24 or 32 bytes) and direction, padding off; null where OpenSSL cannot be called. */
export function opensslEcb(key: Uint8Array, direction: 'encrypt' | 'decrypt'): AesEcb | null {
  const evp = evpCalls();
  if (evp === null || (key.length !== 16 && key.length !== 24 && key.length !== 32)) return null;
  let context: unknown = evp.newContext();
  if (context === null) return null;
  if (evp.init(context, evp.cipher[key.length](), null, key, null, direction === 'encrypt' ? 1 : 0) !== 1 || evp.setPadding(context, 0) !== 1) {
    evp.freeContext(context);
    return null;
  }
  const token = {};
  unclosed.register(token, { context, free: evp.freeContext }, token);
  const written = new Int32Array(1);
  return {
    blocksInto(input, output) {
      if (context === null) throw new Qcow2Error('INTERNAL', 'An AES context was used after it was closed');
      if (input.length % 16 !== 0 || output.length < input.length || input.length > 0x7fff_fff0) throw new Qcow2Error('INTERNAL', `AES-ECB takes whole 16-byte blocks into room for them, not ${input.length} bytes into ${output.length}`);
      if (input.length === 0) return;
      written[0] = -1;
      if (evp.update(context, output, written, input, input.length) !== 1 || written[0] !== input.length) throw new Qcow2Error('INTERNAL', `AES-ECB (OpenSSL) wrote ${written[0]} bytes for ${input.length}`);
    },
    close() {
      if (context === null) return;
      unclosed.unregister(token);
      evp.freeContext(context);
      context = null;
    },
  };
}
