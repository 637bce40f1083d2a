/**
 * Clusters are deflated and inflated through one zlib stream per thread, reset between clusters,
 * and zstd-compressed through one zstd stream (compression.ts). That must give exactly what a fresh
 * stream per cluster gives (node:zlib's deflateRawSync/inflateRawSync/zstdCompressSync, the
 * fallback), what QEMU reads, and a typed error for bad data.
 */
import * as fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compressCluster, compressionSettings, decompressCluster, reusableStreams } from '../../../src/shared/qcow2/codec/compression.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { firstDifference, qemuCheck, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

const CLUSTER = 65536;
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());
afterEach(() => {
  compressionSettings.reuseZlibStream = true;
});

function clusters(count: number): Uint8Array[] {
  const random = new SeededRandom(3);
  return Array.from({ length: count }, (_, index) => (index % 3 === 0 ? compressibleBytes(CLUSTER, index) : index % 3 === 1 ? random.bytes(CLUSTER) : new Uint8Array(CLUSTER).fill(index)));
}

function withFreshStreams<T>(run: () => T): T {
  compressionSettings.reuseZlibStream = false;
  try {
    return run();
  } finally {
    compressionSettings.reuseZlibStream = true;
  }
}

describe('the reused streams', () => {
  it('are the path taken on this Node (24), for zlib and zstd both ways; turned off, none is', () => {
    expect(reusableStreams()).toEqual({ deflate: true, inflate: true, zstdCompress: true, zstdDecompress: true });
    expect(withFreshStreams(() => reusableStreams())).toEqual({ deflate: false, inflate: false, zstdCompress: false, zstdDecompress: false });
  });
});

describe('cluster compression through one reused zlib stream', () => {
  it('deflates each cluster exactly as a fresh stream does, and inflates it back', () => {
    for (const cluster of clusters(30)) {
      const reused = compressCluster(0, cluster);
      const fresh = withFreshStreams(() => compressCluster(0, cluster));
      expect(reused === null ? null : Array.from(reused)).toEqual(fresh === null ? null : Array.from(fresh));
      if (reused === null) continue;
      expect(firstDifference(decompressCluster(0, reused, CLUSTER), cluster)).toBe(-1);
      expect(firstDifference(withFreshStreams(() => decompressCluster(0, reused, CLUSTER)), cluster)).toBe(-1);
    }
  });

  it('says a corrupt or short compressed cluster is CORRUPT, and decodes the next one right after', () => {
    const good = compressCluster(0, compressibleBytes(CLUSTER, 1));
    if (good === null) throw new Error('text should compress');
    const garbage = new SeededRandom(9).bytes(300);
    for (const reuse of [true, false]) {
      compressionSettings.reuseZlibStream = reuse;
      expect(() => decompressCluster(0, garbage, CLUSTER)).toThrow(Qcow2Error);
      expect(() => decompressCluster(0, good.subarray(0, good.length >> 1), CLUSTER)).toThrow(/instead of|could not/);
      expect(firstDifference(decompressCluster(0, good, CLUSTER), compressibleBytes(CLUSTER, 1))).toBe(-1);
    }
  });

  it('writes images qemu-img reads identically, whichever way the clusters were deflated', async () => {
    const raw = folder.file('mixed.raw');
    fs.writeFileSync(raw, Buffer.concat(clusters(48)));
    for (const reuse of [true, false]) {
      compressionSettings.reuseZlibStream = reuse;
      const target = folder.file(`compressed-${reuse}.qcow2`);
      convertImage({ source: raw, target, targetFormat: 'qcow2', compress: true });
      const check = await qemuCheck(target);
      expect(check.code).toBe(0);
      expect(check.report?.['compressed-clusters']).toBeGreaterThan(0);
      expect(firstDifference(await rawOf(target), new Uint8Array(fs.readFileSync(raw)))).toBe(-1);
    }
    expect(fs.readFileSync(folder.file('compressed-true.qcow2')).equals(fs.readFileSync(folder.file('compressed-false.qcow2')))).toBe(true);
  });
});

describe('cluster compression through one reused zstd stream', () => {
  it('writes each cluster as the same frame zstdCompressSync writes (none where it would not shrink), and reads it back', () => {
    let compressed = 0;
    for (const cluster of clusters(30)) {
      const reused = compressCluster(1, cluster);
      const fresh = withFreshStreams(() => compressCluster(1, cluster));
      expect(reused === null ? null : Array.from(reused)).toEqual(fresh === null ? null : Array.from(fresh));
      if (reused === null) continue;
      compressed++;
      expect(firstDifference(decompressCluster(1, reused, CLUSTER), cluster)).toBe(-1);
    }
    expect(compressed).toBe(20);
  });

  it('says a corrupt, short or over-long zstd frame is CORRUPT (QEMU fails a frame that is not exactly the cluster), and decodes the next one right after', () => {
    const good = compressCluster(1, compressibleBytes(CLUSTER, 1));
    if (good === null) throw new Error('text should compress');
    const garbage = new SeededRandom(9).bytes(300);
    const padded = new Uint8Array(good.length + 700).fill(7);
    const oneByteLong = compressCluster(1, compressibleBytes(CLUSTER + 1, 1));
    if (oneByteLong === null) throw new Error('text should compress');
    padded.set(good);
    for (const reuse of [true, false]) {
      compressionSettings.reuseZlibStream = reuse;
      expect(() => decompressCluster(1, garbage, CLUSTER)).toThrow(Qcow2Error);
      expect(() => decompressCluster(1, good.subarray(0, good.length >> 1), CLUSTER)).toThrow(Qcow2Error);
      // 64 KiB of content for a 32 KiB cluster: more than the cluster.
      expect(() => decompressCluster(1, good, CLUSTER / 2)).toThrow(Qcow2Error);
      expect(() => decompressCluster(1, good, CLUSTER * 2)).toThrow(/instead of/);
      // One byte past the cluster: the smallest "more", which a limit of a cluster plus one byte lets through.
      expect(() => decompressCluster(1, oneByteLong, CLUSTER)).toThrow(/more than/);
      // Sector padding after the frame is not part of it.
      expect(firstDifference(decompressCluster(1, padded, CLUSTER), compressibleBytes(CLUSTER, 1))).toBe(-1);
      const into = new Uint8Array(CLUSTER).fill(1);
      expect(decompressCluster(1, good, CLUSTER, into).buffer).toBe(into.buffer);
      expect(firstDifference(into, compressibleBytes(CLUSTER, 1))).toBe(-1);
    }
  });

  it('writes zstd images qemu-img reads identically, whichever way the clusters were compressed', async () => {
    const raw = folder.file('mixed-zstd.raw');
    fs.writeFileSync(raw, Buffer.concat(clusters(48)));
    for (const reuse of [true, false]) {
      compressionSettings.reuseZlibStream = reuse;
      const target = folder.file(`zstd-${reuse}.qcow2`);
      convertImage({ source: raw, target, targetFormat: 'qcow2', compress: true, options: { compressionType: 'zstd' } });
      const check = await qemuCheck(target);
      expect(check.code).toBe(0);
      expect(check.report?.['compressed-clusters']).toBeGreaterThan(0);
      expect(firstDifference(await rawOf(target), new Uint8Array(fs.readFileSync(raw)))).toBe(-1);
    }
    expect(fs.readFileSync(folder.file('zstd-true.qcow2')).equals(fs.readFileSync(folder.file('zstd-false.qcow2')))).toBe(true);
  });
});
