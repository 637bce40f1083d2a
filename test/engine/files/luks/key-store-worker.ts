/** A thread that asks the shared key store for one key (luks-key-cache.test.ts): says whether it had to derive it. */
import { parentPort, workerData } from 'node:worker_threads';
import { cachedVolumeKey, useSharedKeyStore } from '../../../../src/shared/qcow2/files/luks-key-cache.ts';

const { buffer, identity, passphrase, key } = workerData as { buffer: SharedArrayBuffer; identity: string; passphrase: string; key: number[] };
useSharedKeyStore(buffer);
let derived = false;
const found = await cachedVolumeKey(identity, new TextEncoder().encode(passphrase), () => {
  derived = true;
  return Promise.resolve(Uint8Array.from(key));
});
parentPort?.postMessage({ derived, key: [...found] });
