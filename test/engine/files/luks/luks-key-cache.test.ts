/** The store of opened guest volume keys (files/luks-key-cache.ts): per thread, or shared by a pool's threads. */
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { cachedVolumeKey, sharedKeyStoreBuffer, useSharedKeyStore } from '../../../../src/shared/qcow2/files/luks-key-cache.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('the volume key cache', () => {
  it('derives a key once per volume and passphrase, hands out copies, and keeps no failure', async () => {
    let derived = 0;
    const unlock = (key: number) => () => {
      derived++;
      return Promise.resolve(Uint8Array.of(key, key, key));
    };
    const first = await cachedVolumeKey('luks2:volume-a', bytes('right'), unlock(1));
    first.fill(0);
    expect([...(await cachedVolumeKey('luks2:volume-a', bytes('right'), unlock(9)))]).toEqual([1, 1, 1]);
    expect(derived).toBe(1);
    // Another passphrase, or the same one for another volume, is derived on its own.
    expect([...(await cachedVolumeKey('luks2:volume-a', bytes('other'), unlock(2)))]).toEqual([2, 2, 2]);
    expect([...(await cachedVolumeKey('luks2:volume-b', bytes('right'), unlock(3)))]).toEqual([3, 3, 3]);
    expect(derived).toBe(3);
    const refuse = (): Promise<Uint8Array> => {
      derived++;
      return Promise.reject(new Qcow2Error('BAD_PASSPHRASE', 'no'));
    };
    await expect(cachedVolumeKey('luks2:volume-c', bytes('wrong'), refuse)).rejects.toMatchObject({ code: 'BAD_PASSPHRASE' });
    await expect(cachedVolumeKey('luks2:volume-c', bytes('wrong'), refuse)).rejects.toMatchObject({ code: 'BAD_PASSPHRASE' });
    expect(derived).toBe(5);
  });
});

describe('the shared key store', () => {
  async function inThread(buffer: SharedArrayBuffer, identity: string, passphrase: string, key: number[]): Promise<{ derived: boolean; key: number[] }> {
    const worker = new Worker(new URL('./key-store-worker.ts', import.meta.url), { workerData: { buffer, identity, passphrase, key } });
    try {
      return await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
    } finally {
      await worker.terminate();
    }
  }

  it('is one for every thread given it: a key one thread opened is not derived again by the next (the pool\'s threads end when idle)', async () => {
    const buffer = sharedKeyStoreBuffer();
    expect(await inThread(buffer, 'luks2:shared', 'pass', [7, 7])).toEqual({ derived: true, key: [7, 7] });
    expect(await inThread(buffer, 'luks2:shared', 'pass', [9, 9])).toEqual({ derived: false, key: [7, 7] });
    expect(await inThread(buffer, 'luks2:shared', 'other', [5, 5])).toEqual({ derived: true, key: [5, 5] });
    // Another store (another pool) knows nothing of it.
    expect(await inThread(sharedKeyStoreBuffer(), 'luks2:shared', 'pass', [3, 3])).toEqual({ derived: true, key: [3, 3] });
  });

  it('keeps the last eight, the oldest overwritten first', async () => {
    const buffer = sharedKeyStoreBuffer();
    useSharedKeyStore(buffer);
    for (let index = 0; index < 9; index++) await cachedVolumeKey(`luks2:v${index}`, bytes('p'), () => Promise.resolve(Uint8Array.of(index + 1)));
    let derived = 0;
    const again = (index: number) => cachedVolumeKey(`luks2:v${index}`, bytes('p'), () => {
      derived++;
      return Promise.resolve(Uint8Array.of(100 + index));
    });
    expect([...(await again(8))]).toEqual([9]);
    expect([...(await again(1))]).toEqual([2]);
    expect(derived).toBe(0);
    expect([...(await again(0))]).toEqual([100]);
    expect(derived).toBe(1);
  });
});
