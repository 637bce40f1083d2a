import { afterEach, describe, expect, it } from 'vitest';
import { inlineCompressor, threadedCompressor, type ClusterCompressor } from '../../../src/shared/qcow2/codec/cluster-compressor.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

const CLUSTER = 4096;
let open: ClusterCompressor[] = [];
afterEach(() => {
  for (const compressor of open) compressor.close();
  open = [];
});

/** Clusters that compress (text), do not (random) or barely (mixed), in a seeded order. */
function batchOf(count: number, seed: number): Uint8Array {
  const random = new SeededRandom(seed);
  const bytes = new Uint8Array(count * CLUSTER);
  for (let index = 0; index < count; index++) {
    const kind = random.int(0, 3);
    const cluster = kind === 0 ? compressibleBytes(CLUSTER, seed + index) : kind === 1 ? random.bytes(CLUSTER) : new Uint8Array(CLUSTER).fill(index & 0xff);
    bytes.set(cluster, index * CLUSTER);
  }
  return bytes;
}

describe('threaded cluster compressor', () => {
  it.each(['zlib', 'zstd'] as const)('gives the same bytes as compressing inline, batch after batch of varying size (%s)', (name) => {
    const type = name === 'zlib' ? 0 : 1;
    const threaded = threadedCompressor(type, CLUSTER, 64, 2);
    const inline = inlineCompressor(type, CLUSTER);
    open.push(threaded, inline);
    const random = new SeededRandom(7);
    let plain = 0;
    let compressed = 0;
    for (let round = 0; round < 40; round++) {
      const count = random.int(1, 65);
      const input = batchOf(count, round);
      const expected = inline.compress(input, count).map((bytes) => (bytes === null ? null : Array.from(bytes)));
      const actual = threaded.compress(input, count).map((bytes) => (bytes === null ? null : Array.from(bytes)));
      expect(actual).toEqual(expected);
      for (const bytes of expected) if (bytes === null) plain++;
      else compressed++;
    }
    // Both outcomes occur: clusters that do not compress are stored plain.
    expect(plain).toBeGreaterThan(20);
    expect(compressed).toBeGreaterThan(20);
  });

  it('refuses a batch larger than it was made for', () => {
    const threaded = threadedCompressor(0, CLUSTER, 4, 1);
    open.push(threaded);
    expect(() => threaded.compress(new Uint8Array(5 * CLUSTER), 5)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});
