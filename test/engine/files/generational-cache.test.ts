/** The two-generation cache the guest-file readers keep their chunks, inode-table pieces and folder names in. */
import { describe, expect, it } from 'vitest';
import { GenerationalCache } from '../../../src/shared/qcow2/files/generational-cache.ts';

describe('GenerationalCache', () => {
  it('holds at most two generations, keeps what is asked for again, and hands over only what it drops', () => {
    const dropped: string[] = [];
    const cache = new GenerationalCache<number, string>(2, (values) => dropped.push(...values));
    cache.set(1, 'one');
    cache.set(2, 'two');
    cache.set(3, 'three'); // 1 and 2 become the old generation
    expect(cache.get(1), 'found in the old generation, it moves to the young one').toBe('one');
    cache.set(4, 'four'); // young {3, 1} becomes old; old {2} is dropped
    expect(dropped).toEqual(['two']);
    expect(cache.get(2)).toBeUndefined();
    expect([cache.get(3), cache.get(1), cache.get(4)]).toEqual(['three', 'one', 'four']);
  });

  it('keeps a null value as a value (a folder known to need another reader)', () => {
    const cache = new GenerationalCache<number, string | null>(4);
    cache.set(7, null);
    expect(cache.get(7)).toBeNull();
    expect(cache.get(8)).toBeUndefined();
  });
});
