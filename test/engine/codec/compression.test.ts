/**
 * Clusters are deflated and inflated through one zlib stream per thread, reset between clusters
 * (compression.ts). That must give exactly what a fresh stream per cluster gives (node:zlib's
 * deflateRawSync/inflateRawSync, the fallback), what QEMU reads, and a typed error for bad data.
 */
import * as fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compressCluster, compressionSettings, decompressCluster } from '../../../src/shared/qcow2/codec/compression.ts';
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
