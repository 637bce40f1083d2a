/**
 * Extended L2 disks whose clusters are partly written (QEMU allocates them a subcluster at a time):
 * compress compresses such a cluster when what its other subclusters read is zeros, keeps it bit
 * for bit (with each entry's subcluster bits) where they show the backing file, and compact keeps
 * the holes the source file had inside those clusters. Judged by the real qemu-img.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { firstDifference, qemuCheck, qemuCompare, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { expectCheckClean } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** 4 KiB written at the start of each MiB (one subcluster of a 64 KiB cluster), with `pattern`. */
function partialWrites(megabytes: number[], pattern: number): string[] {
  return megabytes.map((megabyte) => `write -P ${pattern} ${megabyte * MiB} 4k`);
}

async function expectSameStates(source: string, output: string, snapshots: string[]): Promise<void> {
  await expectCheckClean(expect, output, output);
  expect((await qemuCompare(source, output, { formatB: 'qcow2' })).code, 'current state').toBe(0);
  for (const name of snapshots) {
    expect(firstDifference(await rawOf(output, { snapshot: name }), await rawOf(source, { snapshot: name })), `snapshot ${name}`).toBe(-1);
  }
}

/** Bytes the file takes on its disk (holes take none). */
function diskBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

describe('rewrite of extended L2 disks with partly written clusters', () => {
  it('compress compresses every such cluster when the rest of it reads zeros (no backing file), in every state', async () => {
    const source = folder.file('partly.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=64k', source, String(32 * MiB)]);
    await qemuIo(source, partialWrites([0, 1, 2, 3, 4, 5, 6, 7], 5));
    await qemuImg(['snapshot', '-c', 'first', source]);
    // New clusters only (a cluster the snapshot shares is copied whole by QEMU when written).
    await qemuIo(source, [...partialWrites([8, 9, 10, 11], 6), `write -P 7 ${12 * MiB + 8 * KiB} 2k`, `write -P 8 ${13 * MiB} 64k`]);
    const output = folder.file('partly-compressed.qcow2');
    const result = rewriteImage({ source, target: output, compression: 'compress' });

    await expectSameStates(source, output, ['first']);
    const check = await qemuCheck(output);
    expect(result.storedClusters, 'clusters left uncompressed').toBe(0);
    expect(check.report?.['compressed-clusters'], 'compressed clusters (qemu-img check)').toBe(check.report?.['allocated-clusters']);
    expect(check.report?.['allocated-clusters'], 'the guest clusters of both states').toBe(14);
    expect(fs.statSync(output).size).toBeLessThan(fs.statSync(source).size);
  });

  it('keeps a cluster bit for bit where its unwritten subclusters show the backing file, and compresses one whose rest is zeroed', async () => {
    const backing = folder.file('base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', backing, String(8 * MiB)]);
    await qemuIo(backing, [`write -P 0x11 0 ${8 * MiB}`]);
    const source = folder.file('overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=64k', '-b', 'base.qcow2', '-F', 'qcow2', source]);
    // 1 MiB: one subcluster written over the backing file's data. 2 MiB: the cluster zeroed, then one subcluster written.
    await qemuIo(source, [`write -P 0x22 ${1 * MiB} 4k`, `write -z ${2 * MiB} 64k`, `write -P 0x33 ${2 * MiB} 4k`]);
    const output = folder.file('overlay-compressed.qcow2');
    const result = rewriteImage({ source, target: output, compression: 'compress' });

    await expectSameStates(source, output, []);
    expect(result.storedClusters, 'the cluster showing the backing file, kept as it is').toBe(1);
    expect(result.compressedClusters, 'the cluster whose rest reads zeros').toBe(1);
    // Kept bit for bit: the unwritten subclusters still read the backing file, whatever it holds later.
    await qemuIo(backing, [`write -P 0x44 ${1 * MiB + 32 * KiB} 4k`]);
    const after = await rawOf(output);
    expect(after[1 * MiB + 32 * KiB], 'the backing file read through the kept cluster').toBe(0x44);
    expect(firstDifference(after, await rawOf(source))).toBe(-1);
  });

  it('compact leaves the unwritten parts of such clusters as holes: the copy takes no more disk than the source', async () => {
    const source = folder.file('sparse.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'extended_l2=on,cluster_size=64k', source, String(64 * MiB)]);
    await qemuIo(source, partialWrites(Array.from({ length: 64 }, (_, index) => index), 9));
    await qemuImg(['snapshot', '-c', 'kept', source]);
    const output = folder.file('sparse-compacted.qcow2');
    rewriteImage({ source, target: output, compression: 'keep' });

    await expectSameStates(source, output, ['kept']);
    // 64 clusters of 64 KiB hold 4 KiB each: written whole they would take 4 MiB.
    expect(diskBytes(output), 'bytes on disk').toBeLessThanOrEqual(diskBytes(source));
    expect(diskBytes(output)).toBeLessThan(2 * MiB);
  });
});
