/**
 * Images made by qemu-img and qemu-io read in Cowbell exactly as `qemu-img convert -O raw` reads
 * them, and `readImageInfo` agrees with `qemu-img info`, across the format matrix.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { configName, formatMatrix, KiB, MiB, qemuOptions, smallDiskSize, type FormatConfig } from '../../helpers/image-matrix.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const alignDown = (value: number, alignment: number): number => Math.floor(value / alignment) * alignment;

/** Source bytes for `convert -c`: compressible text, incompressible noise, zeros, and a noisy tail. */
function sourceBytes(size: number, seed: number): Uint8Array {
  const random = new SeededRandom(seed);
  const bytes = new Uint8Array(size);
  const at = (fraction: number): number => alignDown(size * fraction, 512);
  bytes.set(compressibleBytes(at(0.25), seed), 0);
  bytes.set(random.bytes(at(0.35) - at(0.25)), at(0.25));
  bytes.set(compressibleBytes(at(0.6) - at(0.5), seed + 1), at(0.5));
  bytes.set(random.bytes(3000), size - 3000);
  return bytes;
}

/**
 * qemu-io commands over every kind of cluster the source made: unaligned pattern writes across
 * compressed and plain clusters, zero writes and discards (aligned and not), the unaligned tail,
 * and (meaningful with extended L2) subcluster-sized writes.
 */
function qemuIoMix(size: number, clusterSize: number): string[] {
  const at = (fraction: number): number => alignDown(size * fraction, clusterSize);
  const sub = Math.max(512, clusterSize / 32);
  return [
    `write -P 0x5a ${clusterSize / 2 + 3} ${2 * clusterSize + 100}`,
    `write -P 0xa5 ${at(0.4) + 7} ${clusterSize + 1000}`,
    `write -z ${at(0.55)} ${2 * clusterSize}`,
    `write -z ${at(0.3) + 333} 1000`,
    `discard ${at(0.27)} ${2 * clusterSize}`,
    `discard ${at(0.12) + 100} ${clusterSize}`,
    `write -P 0x33 ${at(0.7) + 3 * sub} ${2 * sub}`,
    `write -z ${at(0.7) + 10 * sub} ${sub}`,
    `write -P 0x44 ${at(0.8) + sub} ${sub}`,
    `discard ${at(0.8) + sub} ${sub}`,
    `write -P 0x77 ${size - 777} 777`,
  ];
}

/** Reads the whole guest disk through Cowbell (and a snapshot, if named). */
function cowbellRead(image: string, snapshot?: string): Uint8Array {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    if (snapshot === undefined) return opened.read(0, opened.virtualSize);
    const entry = opened.snapshots.find((candidate) => candidate.name === snapshot);
    if (entry === undefined) throw new Error(`no snapshot ${snapshot}`);
    const reader = opened.snapshotReader(entry);
    const bytes = new Uint8Array(reader.virtualSize);
    reader.readInto(bytes, 0);
    return bytes;
  } finally {
    opened.close();
  }
}

async function expectReadsAsQemu(expect: ExpectStatic, image: string, snapshot?: string): Promise<void> {
  const expected = await rawOf(image, snapshot === undefined ? {} : { snapshot });
  const actual = cowbellRead(image, snapshot);
  expect(actual.length).toBe(expected.length);
  expect(firstDifference(actual, expected), `first differing byte of ${path.basename(image)}${snapshot ? ` @${snapshot}` : ''}`).toBe(-1);
}

async function expectInfoAsQemu(expect: ExpectStatic, image: string): Promise<void> {
  const qemu = await qemuInfo(image);
  const ours = readImageInfo(image);
  expect(ours['virtual-size']).toBe(qemu['virtual-size']);
  expect(ours['cluster-size']).toBe(qemu['cluster-size']);
  expect(ours['dirty-flag']).toBe(qemu['dirty-flag']);
  const qemuData = qemu['format-specific']?.data ?? {};
  const ourData = ours['format-specific'].data;
  expect(ourData.compat).toBe(qemuData.compat);
  expect(ourData['refcount-bits']).toBe(qemuData['refcount-bits']);
  expect(ourData['compression-type']).toBe(qemuData['compression-type']);
  // qemu-img reports these three for v3 only; so does Cowbell.
  expect(ourData['extended-l2']).toBe(qemuData['extended-l2']);
  expect(ourData['lazy-refcounts']).toBe(qemuData['lazy-refcounts']);
  expect(ourData.corrupt).toBe(qemuData.corrupt);
  expect(ours['backing-filename']).toBe(qemu['backing-filename']);
  expect(ours['backing-filename-format']).toBe(qemu['backing-filename-format']);
  expect(ours.snapshots).toEqual(qemu.snapshots);
}

/** convert -c from mixed source bytes, a snapshot where refcounts can count one, then the qemu-io mix on top. */
async function makeMixedImage(config: FormatConfig, name: string, seed: number): Promise<{ image: string; size: number }> {
  const size = smallDiskSize(config);
  const source = folder.file(`${name}.src`);
  const image = folder.file(`${name}.qcow2`);
  fs.writeFileSync(source, sourceBytes(size, seed));
  await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', qemuOptions(config), source, image]);
  fs.rmSync(source);
  // A snapshot shares every cluster (refcount 2), which 1-bit refcounts cannot count.
  if (config.refcountBits > 1) await qemuImg(['snapshot', '-c', 'converted', image]);
  await qemuIo(image, qemuIoMix(size, config.clusterSize));
  return { image, size };
}

async function compressedClusters(image: string): Promise<number> {
  return (await qemuCheck(image)).report?.['compressed-clusters'] ?? 0;
}

const matrix = formatMatrix();

describe.concurrent('qemu-made images read as qemu-img reads them', { timeout: 60_000 }, () => {
  matrix.forEach((config, index) => {
    const withSnapshot = config.refcountBits > 1;
    it(`${configName(config)}: compressed, plain, zero and discarded clusters${withSnapshot ? ' and a snapshot' : ''}`, async ({ expect }) => {
      const { image } = await makeMixedImage(config, `mixed-${index}`, index + 1);
      expect(await compressedClusters(image), 'compressed clusters left after the qemu-io mix').toBeGreaterThan(0);
      await expectReadsAsQemu(expect, image);
      if (withSnapshot) await expectReadsAsQemu(expect, image, 'converted');
      await expectInfoAsQemu(expect, image);
    });
  });

  const zstdConfigs = matrix.filter((config) => config.compat === '1.1' && config.refcountBits === 16 && config.clusterSize >= 4 * KiB);
  zstdConfigs.forEach((config, index) => {
    const zstd: FormatConfig = { ...config, compressionType: 'zstd' };
    it(`${configName(zstd)}: zstd-compressed clusters`, async ({ expect }) => {
      const { image } = await makeMixedImage(zstd, `zstd-${index}`, 100 + index);
      expect(await compressedClusters(image), 'zstd clusters left after the qemu-io mix').toBeGreaterThan(0);
      await expectReadsAsQemu(expect, image);
      await expectInfoAsQemu(expect, image);
    });
  });

  // One overlay per cluster size and compat, over a raw or a qcow2 base in turn.
  const overlayConfigs = matrix.filter((config) => config.refcountBits === 16 && (config.compat === '0.10' || config.extendedL2 || config.clusterSize < 16 * KiB));
  overlayConfigs.forEach((config, index) => {
    const baseFormat = index % 2 === 0 ? 'raw' : 'qcow2';
    it(`${configName(config)}: an overlay on a ${baseFormat} base named relative to its folder`, async ({ expect }) => {
      const size = smallDiskSize(config);
      const caseFolder = folder.file(`overlay-${index}`);
      fs.mkdirSync(path.join(caseFolder, 'base'), { recursive: true });
      fs.mkdirSync(path.join(caseFolder, 'disks'));
      const base = path.join(caseFolder, 'base', `base.${baseFormat}`);
      // The base is smaller than the overlay on odd cases: past its end the guest reads zeros.
      const baseSize = index % 3 === 0 ? size - 4 * config.clusterSize : size;
      fs.writeFileSync(base, new SeededRandom(200 + index).bytes(baseSize));
      if (baseFormat === 'qcow2') {
        fs.renameSync(base, `${base}.raw`);
        await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', `${base}.raw`, base]);
      }
      const overlay = path.join(caseFolder, 'disks', 'overlay.qcow2');
      // Run from another folder: the relative name must resolve against the overlay's folder.
      await qemuImg(['create', '-f', 'qcow2', '-o', qemuOptions(config), '-b', `../base/base.${baseFormat}`, '-F', baseFormat, overlay, String(size)], { cwd: folder.path });
      await qemuIo(overlay, qemuIoMix(size, config.clusterSize), { cwd: folder.path });
      await expectReadsAsQemu(expect, overlay);
      await expectInfoAsQemu(expect, overlay);
    });
  });

  it('a three-level chain (raw base, qcow2 middle, v3 extended-L2 top) in three folders', async ({ expect }) => {
    const root = folder.file('chain');
    for (const sub of ['base', 'middle', 'top']) fs.mkdirSync(path.join(root, sub), { recursive: true });
    const size = 4 * MiB + 512;
    fs.writeFileSync(path.join(root, 'base', 'base.raw'), sourceBytes(size, 300));
    const middle = path.join(root, 'middle', 'middle.qcow2');
    const top = path.join(root, 'top', 'top.qcow2');
    await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4096', '-b', '../base/base.raw', '-F', 'raw', middle], { cwd: folder.path });
    await qemuIo(middle, qemuIoMix(size, 4096), { cwd: folder.path });
    await qemuImg(['snapshot', '-c', 'middle-snap', middle]);
    await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=1.1,cluster_size=65536,extended_l2=on', '-b', '../middle/middle.qcow2', '-F', 'qcow2', top], { cwd: folder.path });
    await qemuIo(top, [...qemuIoMix(size, 65536), 'write -P 0x99 70000 5000', 'write -z 300000 4096', 'discard 1048576 65536'], { cwd: folder.path });
    await expectReadsAsQemu(expect, top);
    await expectReadsAsQemu(expect, middle);
    await expectInfoAsQemu(expect, top);
    await expectInfoAsQemu(expect, middle);
  });
});
