/**
 * Volume keys of guest LUKS volumes already opened in this thread, so that the next folder opened
 * does not pay the key derivation again (Argon2 at cryptsetup's defaults: seconds and a GiB of
 * memory, every time). An entry is found by a hash of a per-thread random salt, the volume's
 * identity (UUID and key digest) and the passphrase: neither passphrase nor key is a key of the
 * map, and a changed header (a new key) misses. A few volumes at most; dropped keys are zeroed.
 * Like an unlocked dm-crypt device, a key stays in memory while the app runs.
 */
import { nodeCrypto } from '../crypto/node-crypto.ts';
import { GenerationalCache } from './generational-cache.ts';

let salt: Uint8Array | null = null;
const keys = new GenerationalCache<string, Uint8Array>(8, (dropped) => {
  for (const key of dropped) key.fill(0);
});

function entryName(identity: string, passphrase: Uint8Array): string {
  salt ??= new Uint8Array(nodeCrypto().randomBytes(32));
  return nodeCrypto().createHash('sha256').update(salt).update(identity).update(new Uint8Array(1)).update(passphrase).digest('hex');
}

/** The volume key for `identity` under `passphrase`: cached, or from `unlock` (a failure is not cached). A copy: the caller may zero it. */
export async function cachedVolumeKey(identity: string, passphrase: Uint8Array, unlock: () => Promise<Uint8Array>): Promise<Uint8Array> {
  const name = entryName(identity, passphrase);
  const cached = keys.get(name);
  if (cached !== undefined) return cached.slice();
  const key = await unlock();
  keys.set(name, key.slice());
  return key;
}
