import * as fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { inlineCompressor, threadedCompressor, type ClusterCompressor } from '../../../src/shared/qcow2/codec/cluster-compressor.ts';
import { tempDir } from '../../helpers/qemu.ts';
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

  it.each(['inline', 'threaded'] as const)('takes a batch placed in its own input buffer as it takes one from elsewhere (%s)', (kind) => {
    const compressor = kind === 'inline' ? inlineCompressor(1, CLUSTER) : threadedCompressor(1, CLUSTER, 64, 1);
    const reference = inlineCompressor(1, CLUSTER);
    open.push(compressor, reference);
    for (let round = 0; round < 6; round++) {
      const count = 10 + round * 9;
      const input = batchOf(count, 100 + round);
      const expected = reference.compress(input, count).map((bytes) => (bytes === null ? null : Array.from(bytes)));
      const placed = compressor.inputBuffer(count);
      expect(placed.length).toBe(count * CLUSTER);
      placed.set(input);
      expect(compressor.compress(placed, count).map((bytes) => (bytes === null ? null : Array.from(bytes)))).toEqual(expected);
    }
  });

  it('starts on its first batch without waiting for a helper still starting, and counts the helper once close() has let it start', () => {
    const folder = tempDir();
    try {
      // A helper that takes two seconds to start: the batch below takes milliseconds on the caller alone.
      const slow = folder.file('slow-compress-worker.mjs');
      const real = new URL('../../../src/shared/qcow2/codec/compress-worker.ts', import.meta.url).href;
      fs.writeFileSync(slow, `Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2000);\nawait import(${JSON.stringify(real)});\n`);
      const threaded = threadedCompressor(0, CLUSTER, 64, 1, slow, 60_000);
      const inline = inlineCompressor(0, CLUSTER);
      open.push(inline);
      const input = batchOf(64, 3);
      const results = threaded.compress(input, 64).map((bytes) => (bytes === null ? null : Array.from(bytes)));
      expect(threaded.threadsReady(), 'the batch waited for the helper to start').toBe(1);
      expect(results).toEqual(inline.compress(input, 64).map((bytes) => (bytes === null ? null : Array.from(bytes))));
      threaded.close();
      expect(threaded.threadsReady()).toBe(2);
    } finally {
      folder.cleanup();
    }
  });

  it('refuses a batch larger than it was made for', () => {
    const threaded = threadedCompressor(0, CLUSTER, 4, 1);
    open.push(threaded);
    expect(() => threaded.compress(new Uint8Array(5 * CLUSTER), 5)).toThrow(expect.objectContaining({ code: 'INTERNAL' }));
  });
});
