import { describe, expect, it } from 'vitest';
import { ClusterCounts } from '../../../src/shared/qcow2/image/cluster-counts.ts';
import { OffsetIndex } from '../../../src/shared/qcow2/image/offset-index.ts';

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

/** Every cluster and count, as forEach visits them. */
function allOf(counts: ClusterCounts): [number, number][] {
  const found: [number, number][] = [];
  counts.forEach((cluster, value) => found.push([cluster, value]));
  return found;
}

describe('ClusterCounts', () => {
  it('counts per cluster from 0, past 2^24 clusters and 2^32 as well as near 0', () => {
    const counts = new ClusterCounts();
    const clusters = [0, 1, 65_535, 65_536, 2 ** 24 + 3, 2 ** 32 + 7, 2 ** 40];
    for (const cluster of clusters) counts.add(cluster, 1);
    counts.add(65_536, 2);
    expect(counts.get(65_536)).toBe(3);
    expect(counts.get(2)).toBe(0);
    expect(counts.get(2 ** 33)).toBe(0);
    expect(allOf(counts)).toEqual(clusters.map((cluster) => [cluster, cluster === 65_536 ? 3 : 1]));
  });

  it('holds more distinct clusters than a Map can (2^24 + 1), in ascending order', () => {
    const counts = new ClusterCounts();
    const total = 2 ** 24 + 1;
    // Spread over the range, in a scrambled order.
    for (let index = 0; index < total; index++) counts.set((index * 7919) % total, 5);
    let seen = 0;
    let previous = -1;
    let ordered = true;
    counts.forEach((cluster, value) => {
      if (cluster <= previous || value !== 5) ordered = false;
      previous = cluster;
      seen++;
    });
    expect(ordered).toBe(true);
    expect(seen).toBe(total);
    // 2^24 sets and a walk: about a second alone, five on a machine busy with other test files.
  }, 30_000);

  it('refuses what is not a cluster index, and a zero never makes a page', () => {
    const counts = new ClusterCounts();
    for (const bad of [-1, 0.5, Number.NaN]) expect(() => counts.set(bad, 1)).toThrow(RangeError);
    counts.set(2 ** 30, 0);
    expect(allOf(counts)).toEqual([]);
  });
});
