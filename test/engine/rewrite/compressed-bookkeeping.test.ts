import { describe, expect, it } from 'vitest';
import { CompressedPairs, OUTPUT_ZERO } from '../../../src/shared/qcow2/rewrite/cluster-pairs.ts';
import { CompressedClusters } from '../../../src/shared/qcow2/rewrite/compressed-clusters.ts';

describe('CompressedClusters', () => {
  it('counts references over every entry naming the data; the size is the first entry’s', () => {
    const clusters = new CompressedClusters();
    expect(clusters.add(0x10200, 1024, 1)).toBe(true);
    expect(clusters.add(0x10600, 512, 2)).toBe(true);
    expect(clusters.add(0x10200, 1536, 3)).toBe(false);
    expect(clusters.count).toBe(2);
    const first = clusters.numberOf(0x10200);
    expect([clusters.offsetAt(first), clusters.sizeAt(first), clusters.referencesAt(first)]).toEqual([0x10200, 1024, 4]);
    expect(clusters.referencesAt(clusters.numberOf(0x10600))).toBe(2);
    expect(clusters.numberOf(0x10400)).toBe(-1);
  });
});

describe('CompressedPairs', () => {
  it('remembers each compressed source with the output it matched, and only that pairing', () => {
    const pairs = new CompressedPairs();
    pairs.set(0x10200, 1024, 0x90000, 900);
    pairs.set(2 ** 33 + 0x10200, 512, OUTPUT_ZERO, 0);
    expect(pairs.has(0x10200, 1024, 0x90000, 900)).toBe(true);
    expect(pairs.has(2 ** 33 + 0x10200, 512, OUTPUT_ZERO, 0)).toBe(true);
    // Another stored size, another output or another length is another pair, compared again.
    expect(pairs.has(0x10200, 1536, 0x90000, 900)).toBe(false);
    expect(pairs.has(0x10200, 1024, 0xa0000, 900)).toBe(false);
    expect(pairs.has(0x10200, 1024, 0x90000, 901)).toBe(false);
    expect(pairs.has(0x10600, 1024, 0x90000, 900)).toBe(false);
  });
});
