/**
 * Volume keys of guest LUKS volumes already opened, so that the next folder opened does not pay
 * the key derivation again (Argon2 at cryptsetup's defaults: seconds and most of a GiB, every
 * time). An entry is found by a hash of a random salt, the volume's identity (UUID and key digest)
 * and the passphrase: neither passphrase nor key names an entry, and a changed header (a new key)
 * misses. A few volumes at most, the oldest overwritten (and zeroed) first. Like an unlocked
 * dm-crypt device, a key stays in memory while the app runs.
 *
 * In the app the store is a SharedArrayBuffer the job pool makes once (sharedKeyStoreBuffer) and
 * hands every worker it starts: the pool's threads come and go (idle ones end after 30 s), and a
 * key opened on one must not be derived again on the next. Elsewhere (the CLI, tests) the store is
 * the thread's own buffer.
 */
import { nodeCrypto } from '../crypto/node-crypto.ts';

const SLOTS = 8;
const NAME_BYTES = 32;
const MAX_KEY_BYTES = 64;
/** Per slot: the entry's name, its key's length (0: empty), the key. */
const SLOT_BYTES = NAME_BYTES + 4 + MAX_KEY_BYTES;
/** The store: a lock word, the next slot to write, the salt, then the slots. */
const LOCK_AT = 0;
const NEXT_AT = 4;
const SALT_AT = 8;
const SLOTS_AT = SALT_AT + 32;
const STORE_BYTES = SLOTS_AT + SLOTS * SLOT_BYTES;

/** A new store for a job pool to share with its workers (salted here, once). */
export function sharedKeyStoreBuffer(): SharedArrayBuffer {
  const buffer = new SharedArrayBuffer(STORE_BYTES);
  new Uint8Array(buffer, SALT_AT, 32).set(nodeCrypto().randomBytes(32));
  return buffer;
}

let store: Uint8Array | null = null;

/** Makes this thread use `buffer` (from sharedKeyStoreBuffer) as its store; a buffer of another size is ignored. */
export function useSharedKeyStore(buffer: SharedArrayBuffer): void {
  if (buffer.byteLength === STORE_BYTES) store = new Uint8Array(buffer);
}

function currentStore(): Uint8Array {
  if (store === null) {
    store = new Uint8Array(new SharedArrayBuffer(STORE_BYTES));
    store.set(nodeCrypto().randomBytes(32), SALT_AT);
  }
  return store;
}

/** Runs `work` holding the store's lock (a spin: every holder only copies a few bytes). */
function locked<T>(bytes: Uint8Array, work: (words: Int32Array) => T): T {
  const words = new Int32Array(bytes.buffer, 0, 2);
  while (Atomics.compareExchange(words, LOCK_AT / 4, 0, 1) !== 0);
  try {
    return work(words);
  } finally {
    Atomics.store(words, LOCK_AT / 4, 0);
  }
}

function entryName(bytes: Uint8Array, identity: string, passphrase: Uint8Array): Uint8Array {
  const hash = nodeCrypto().createHash('sha256').update(bytes.subarray(SALT_AT, SALT_AT + 32)).update(identity).update(new Uint8Array(1)).update(passphrase).digest();
  return new Uint8Array(hash.buffer, hash.byteOffset, NAME_BYTES);
}

function slotLength(bytes: Uint8Array, slot: number): number {
  return new DataView(bytes.buffer, SLOTS_AT + slot * SLOT_BYTES + NAME_BYTES, 4).getUint32(0, true);
}

function find(bytes: Uint8Array, name: Uint8Array): Uint8Array | null {
  for (let slot = 0; slot < SLOTS; slot++) {
    const at = SLOTS_AT + slot * SLOT_BYTES;
    const length = slotLength(bytes, slot);
    if (length > 0 && name.every((byte, index) => bytes[at + index] === byte)) return bytes.slice(at + NAME_BYTES + 4, at + NAME_BYTES + 4 + length);
  }
  return null;
}

function keep(bytes: Uint8Array, words: Int32Array, name: Uint8Array, key: Uint8Array): void {
  if (key.length === 0 || key.length > MAX_KEY_BYTES || find(bytes, name) !== null) return;
  const slot = Atomics.load(words, NEXT_AT / 4) % SLOTS;
  const at = SLOTS_AT + slot * SLOT_BYTES;
  bytes.fill(0, at, at + SLOT_BYTES);
  bytes.set(name, at);
  new DataView(bytes.buffer, at + NAME_BYTES, 4).setUint32(0, key.length, true);
  bytes.set(key, at + NAME_BYTES + 4);
  Atomics.store(words, NEXT_AT / 4, (slot + 1) % SLOTS);
}

/** The volume key for `identity` under `passphrase`: kept, or from `unlock` (a failure is not kept). A copy: the caller may zero it. */
export async function cachedVolumeKey(identity: string, passphrase: Uint8Array, unlock: () => Promise<Uint8Array>): Promise<Uint8Array> {
  const bytes = currentStore();
  const name = entryName(bytes, identity, passphrase);
  const kept = locked(bytes, () => find(bytes, name));
  if (kept !== null) return kept;
  const key = await unlock();
  locked(bytes, (words) => keep(bytes, words, name, key));
  return key;
}
