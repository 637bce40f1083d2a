/** The per-thread cache of opened guest volume keys (files/luks-key-cache.ts). */
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { cachedVolumeKey } from '../../../../src/shared/qcow2/files/luks-key-cache.ts';

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
