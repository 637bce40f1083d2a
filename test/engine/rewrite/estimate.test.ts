/**
 * The size a compress will most likely give, from a sample of clusters (what the free-space check
 * and the app's "about …" go by), against what the compress then really writes. Was: fewer than
 * 128 data clusters sampled only the first 64; a stride lined up with periodic data; the refcount
 * width's limit on clusters packed into one host cluster was ignored — each off 5–60×, so the
 * space check passed a compress that then filled the drive. Then (the same session) that limit
 * was counted as whole host clusters, where the writer leaves their unused rest as holes: a
 * compress that fit was refused.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { previewRewrite, rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { spreadPicks } from '../../../src/shared/qcow2/rewrite/estimate.ts';
import { qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const KiB = 1024;
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** A qcow2 image whose clusters of `clusterBytes` are each a run of one byte (compresses to almost nothing) or random, as `compressible(index)` says. */
async function imageOf(name: string, clusters: number, clusterBytes: number, compressible: (index: number) => boolean, options = ''): Promise<string> {
  const random = new SeededRandom(clusters);
  const raw = Buffer.alloc(clusters * clusterBytes);
  for (let index = 0; index < clusters; index++) {
    const cluster = raw.subarray(index * clusterBytes, (index + 1) * clusterBytes);
    if (compressible(index)) cluster.fill(5);
    else cluster.set(random.bytes(clusterBytes));
  }
  const rawFile = folder.file(`${name}.raw`);
  fs.writeFileSync(rawFile, raw);
  const image = folder.file(`${name}.qcow2`);
  await qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${clusterBytes}${options}`, rawFile, image]);
  return image;
}

describe('the expected size of a compress, against the real one', () => {
  it.each([
    ['half runs, half random, 127 clusters of 512 KiB (fewer than two per sample)', () => imageOf('half', 127, 512 * KiB, (index) => index < 64)],
    ['every tenth cluster a run, the rest random', () => imageOf('periodic', 600, 64 * KiB, (index) => index % 10 === 0)],
    ['runs only, refcount_bits=4 (a third of 15 clusters per host cluster, the rest of it a hole)', () => imageOf('narrow', 512, 64 * KiB, () => true, ',refcount_bits=4')],
    ['runs only, refcount_bits=1 (one cluster per host cluster, the rest of it a hole)', () => imageOf('single', 512, 64 * KiB, () => true, ',refcount_bits=1')],
    ['random, refcount_bits=2 (nothing compresses)', () => imageOf('random', 256, 64 * KiB, () => false, ',refcount_bits=2')],
  ])('%s: within 15% of what it takes of the disk (and a few clusters of metadata)', async (_name, make) => {
    const image = await make();
    const preview = previewRewrite({ source: image, compression: 'compress' });
    const output = `${image}.compressed.qcow2`;
    rewriteImage({ source: image, target: output, compression: 'compress' });
    // The writer leaves zeros inside clusters as holes: what the file takes, which the space check is about.
    const { blocks, size } = fs.statSync(output);
    const taken = blocks * 512;
    expect(preview.expectedBytes).toBeGreaterThan(0.85 * taken);
    expect(preview.expectedBytes).toBeLessThan(1.15 * taken + 1024 * KiB);
    expect(preview.maxBytes).toBeGreaterThanOrEqual(size);
  });
});

describe('spreadPicks', () => {
  it('gives one number from each equal stretch, distinct and in order, the same each time; all of them when there are no more than asked', () => {
    for (const [total, count] of [[1000, 64], [127, 64], [65, 64], [10 ** 9, 64]] as const) {
      const picks = spreadPicks(total, count);
      expect(picks).toHaveLength(count);
      picks.forEach((pick, index) => {
        expect(pick).toBeGreaterThanOrEqual(Math.floor((index * total) / count));
        expect(pick).toBeLessThan(Math.floor(((index + 1) * total) / count));
      });
      expect(spreadPicks(total, count)).toEqual(picks);
    }
    expect(spreadPicks(5, 64)).toEqual([0, 1, 2, 3, 4]);
    expect(spreadPicks(0, 64)).toEqual([]);
    // Not a fixed stride: the places within the stretches vary.
    const offsets = new Set(spreadPicks(6400, 64).map((pick, index) => pick - index * 100));
    expect(offsets.size).toBeGreaterThan(20);
  });
});
