/**
 * node:crypto, loaded the first time encryption is used: a plain disk's commands never pay for it
 * (loading it is a tenth of a short command's start-up).
 */
import type * as NodeCrypto from 'node:crypto';

let loaded: typeof NodeCrypto | null = null;

export function nodeCrypto(): typeof NodeCrypto {
  loaded ??= process.getBuiltinModule('node:crypto');
  return loaded;
}
