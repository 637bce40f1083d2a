import { describe, expect, it } from 'vitest';
import { CompressedPairs, OUTPUT_ZERO } from '../../../src/shared/qcow2/rewrite/cluster-pairs.ts';
import { CompressedClusters } from '../../../src/shared/qcow2/rewrite/compressed-clusters.ts';
import { OffsetIndex } from '../../../src/shared/qcow2/rewrite/offset-index.ts';

/** Offsets as compressed data lies: packed at byte granularity, past 4 GiB too, many sharing their low 32 bits. */
function compressedOffsets(count: number): number[] {
  const offsets: number[] = [];
  let position = 0x5_0000;
  for (let index = 0; index < count; index++) {
    offsets.push(index % 3 === 2 ? position + 2 ** 32 * (index % 7) : position);
    position += 512 * (1 + (index % 5)) + (index % 11);
  }
  return offsets;
}

describe('OffsetIndex', () => {
  it('numbers offsets in the order they first come, the same number each time after', () => {
    const index = new OffsetIndex();
    expect(index.add(4096)).toBe(0);
    expect(index.add(2 ** 40 + 4096)).toBe(1);
    expect(index.add(4096)).toBe(0);
    expect(index.add(0)).toBe(2);
    expect(index.count).toBe(3);
    expect([0, 1, 2].map((number) => index.offsetAt(number))).toEqual([4096, 2 ** 40 + 4096, 0]);
    expect(index.numberOf(2 ** 40 + 4096)).toBe(1);
    expect(index.numberOf(8192)).toBe(-1);
  });

  it('keeps every number through many growths (200,000 offsets, past 4 GiB)', () => {
    const index = new OffsetIndex();
    const offsets = compressedOffsets(200_000);
    const numbers = offsets.map((offset) => index.add(offset));
    expect(numbers.every((number, position) => number === position)).toBe(true);
    expect(index.count).toBe(offsets.length);
    for (let number = 0; number < offsets.length; number += 997) {
      expect(index.numberOf(offsets[number] ?? -1)).toBe(number);
      expect(index.offsetAt(number)).toBe(offsets[number]);
    }
    expect(index.numberOf(1)).toBe(-1);
  });

  it('refuses what is not a byte offset', () => {
    const index = new OffsetIndex();
    for (const bad of [-1, 0.5, Number.NaN, 2 ** 53]) expect(() => index.add(bad)).toThrow(RangeError);
  });
});

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
