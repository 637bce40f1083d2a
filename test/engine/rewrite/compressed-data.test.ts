/**
 * What a rewrite's preview says about the compressed data of every state: the Encrypt… dialog warns
 * that it is stored uncompressed only when there is some (it used to warn on every disk). Images made
 * by qemu-img: `convert -c` for compressed clusters, a snapshot then `qemu-io write` over the whole
 * disk for compressed data only a snapshot still reads.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { previewRewrite, rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const KiB = 1024;
const CLUSTER = 64 * KiB;
/** Clusters of guest data: half of each cluster random, half zeros (compresses to about half). */
const DATA_CLUSTERS = 24;

let folder: TempDir;
let raw: string;
beforeAll(() => {
  folder = tempDir();
  const random = new SeededRandom(7);
  const bytes = Buffer.alloc(DATA_CLUSTERS * CLUSTER + 8 * CLUSTER);
  for (let index = 0; index < DATA_CLUSTERS; index++) bytes.set(random.bytes(CLUSTER / 2), index * CLUSTER);
  raw = folder.file('guest.raw');
  fs.writeFileSync(raw, bytes);
});
afterAll(() => folder.cleanup());

async function convert(name: string, compressed: boolean): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['convert', '-q', ...(compressed ? ['-c'] : []), '-f', 'raw', '-O', 'qcow2', raw, image]);
  return image;
}

describe('the compressed data a rewrite preview reports', () => {
  it('is none on a disk qemu-img wrote uncompressed', async () => {
    const image = await convert('plain.qcow2', false);
    const { compressed } = previewRewrite({ source: image, compression: 'uncompress', encryption: { kind: 'luks' } });
    expect(compressed).toEqual({ clusters: 0, storedBytes: 0, guestBytes: 0, inCurrent: false, inSnapshots: 0 });
  });

  it('counts what qemu-img convert -c compressed, as qemu-img check counts it, with its stored and uncompressed sizes', async () => {
    const image = await convert('compressed.qcow2', true);
    const { report } = await qemuCheck(image);
    expect(report?.['compressed-clusters']).toBe(DATA_CLUSTERS);
    const { compressed } = previewRewrite({ source: image, compression: 'uncompress', encryption: { kind: 'luks' } });
    expect(compressed.clusters).toBe(DATA_CLUSTERS);
    expect(compressed.guestBytes).toBe(DATA_CLUSTERS * CLUSTER);
    // Half of each cluster is random: it takes at least that, and clearly less than the whole cluster.
    expect(compressed.storedBytes).toBeGreaterThanOrEqual((DATA_CLUSTERS * CLUSTER) / 2);
    expect(compressed.storedBytes).toBeLessThan(0.6 * DATA_CLUSTERS * CLUSTER);
    expect(compressed.inCurrent).toBe(true);
    expect(compressed.inSnapshots).toBe(0);
  });

  it('finds compressed data only snapshots read, each cluster once however many states share it', async () => {
    const image = await convert('in-snapshots.qcow2', true);
    await qemuImg(['snapshot', '-c', 'first', image]);
    await qemuImg(['snapshot', '-c', 'second', image]);
    const shared = previewRewrite({ source: image, compression: 'uncompress', encryption: { kind: 'luks' } }).compressed;
    expect(shared).toMatchObject({ clusters: DATA_CLUSTERS, inCurrent: true, inSnapshots: 2 });

    // Every cluster of the current state written anew, uncompressed: only the snapshots still read compressed data.
    await qemuIo(image, [`write -P 0x5a 0 ${DATA_CLUSTERS * CLUSTER + 8 * CLUSTER}`]);
    expect((await qemuCheck(image)).report?.['compressed-clusters'] ?? 0).toBe(0);
    const { compressed } = previewRewrite({ source: image, compression: 'uncompress', encryption: { kind: 'luks' } });
    expect(compressed).toEqual({ ...shared, inCurrent: false, inSnapshots: 2 });
  });

  it('is what the rewrite then reports storing uncompressed: encrypted, or --uncompress; none when it stays compressed or there is none', async () => {
    const image = await convert('reported.qcow2', true);
    await qemuImg(['snapshot', '-c', 'first', image]);
    const previewed = previewRewrite({ source: image, compression: 'uncompress', encryption: { kind: 'luks' } }).compressed;
    const quickKey = { kind: 'luks', passphrase: 'moo', iterations: 1000, digestIterations: 1000 } as const;
    expect(rewriteImage({ source: image, target: folder.file('reported.luks.qcow2'), compression: 'keep', encryption: quickKey }).storedUncompressed).toEqual(previewed);
    expect(rewriteImage({ source: image, target: folder.file('reported.plain.qcow2'), compression: 'uncompress' }).storedUncompressed).toEqual(previewed);
    expect(rewriteImage({ source: image, target: folder.file('reported.kept.qcow2'), compression: 'keep' }).storedUncompressed).toBeNull();
    expect((await qemuCheck(folder.file('reported.kept.qcow2'))).report?.['compressed-clusters']).toBe(DATA_CLUSTERS);
    const plain = await convert('reported-none.qcow2', false);
    expect(rewriteImage({ source: plain, target: folder.file('reported-none.luks.qcow2'), compression: 'keep', encryption: quickKey }).storedUncompressed).toBeNull();
  });
});
