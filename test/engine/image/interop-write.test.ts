/**
 * Images Cowbell writes are images QEMU accepts: after Cowbell's writes, zero writes and discards
 * (on images Cowbell or qemu-img made, on compressed clusters, in an overlay, after a snapshot),
 * `qemu-img check` is clean, `qemu-img compare` matches a raw model of the guest, and Cowbell
 * reads the model back.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, type ExpectStatic } from 'vitest';
import { checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { changeKeySlots } from '../../../src/shared/qcow2/crypto/key-slot-change.ts';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { applyToImage, applyToModel, randomGuestOps, type DiscardSemantics, type GuestOp } from '../../helpers/guest-model.ts';
import { configName, cowbellOptions, formatMatrix, KiB, MiB, qemuOptions, smallDiskSize, type FormatConfig } from '../../helpers/image-matrix.ts';
import { firstDifference, qemuCheck, qemuCompare, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { createLuksImage } from '../../helpers/encrypted-images.ts';
import { appendCluster, setRefcount } from '../../helpers/qcow2-poke.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const matrix = formatMatrix();

/** Fewer random operations where each may move megabytes (2 MiB clusters). */
const opCount = (config: FormatConfig, count: number): number => (config.clusterSize >= MiB ? Math.ceil(count / 3) : count);

/** Runs ops on the image (opened writable) and on the model, closing and reopening between rounds. */
function writeRounds(image: string, model: Uint8Array, rounds: GuestOp[][], semantics: DiscardSemantics): void {
  for (const ops of rounds) {
    const opened = Qcow2Image.open(image);
    try {
      for (const op of ops) {
        applyToImage(opened, op);
        applyToModel(model, op, semantics);
      }
    } finally {
      opened.close();
    }
  }
}

/** qemu-img check is clean, qemu-img compare matches the model, and Cowbell reads the model back. */
async function expectImageHolds(expect: ExpectStatic, image: string, model: Uint8Array): Promise<void> {
  const check = await qemuCheck(image);
  expect(check.output, 'qemu-img check output').not.toMatch(/ERROR|Leaked/);
  expect(check.code).toBe(0);
  expect(check.report?.corruptions ?? 0).toBe(0);
  expect(check.report?.leaks ?? 0).toBe(0);
  const modelFile = `${image}.model`;
  fs.writeFileSync(modelFile, model);
  const compare = await qemuCompare(image, modelFile);
  fs.rmSync(modelFile);
  expect(compare.output).toMatch(/identical/);
  expect(compare.code).toBe(0);
  const reopened = Qcow2Image.open(image, { readOnly: true });
  try {
    expect(firstDifference(reopened.read(0, reopened.virtualSize), model), 'first byte Cowbell reads back wrong').toBe(-1);
  } finally {
    reopened.close();
  }
}

function semanticsOf(config: FormatConfig, virtualSize: number, hasBacking: boolean): DiscardSemantics {
  return { clusterSize: config.clusterSize, virtualSize, version: config.compat === '0.10' ? 2 : 3, hasBacking };
}

/** Operations aimed at the first clusters of a compressed region: a partial write, a zero write, a discard, an unaligned zero write. */
function opsOnCompressed(clusterSize: number, random: SeededRandom): GuestOp[] {
  return [
    { kind: 'write', offset: clusterSize + 100, data: random.bytes(300) },
    { kind: 'zero', offset: 2 * clusterSize, length: clusterSize },
    { kind: 'discard', offset: 3 * clusterSize, length: clusterSize },
    { kind: 'zero', offset: 4 * clusterSize + 7, length: 99 },
    { kind: 'write', offset: 5 * clusterSize - 10, data: random.bytes(clusterSize + 20) },
  ];
}

/** A qemu-img convert -c image whose first quarter is compressed clusters; returns its guest bytes. */
async function qemuCompressedImage(config: FormatConfig, image: string, seed: number): Promise<Uint8Array> {
  const size = smallDiskSize(config);
  const source = new Uint8Array(size);
  source.set(compressibleBytes(Math.floor(size / 4), seed));
  source.set(new SeededRandom(seed).bytes(size / 8), Math.floor(size / 2));
  fs.writeFileSync(`${image}.src`, source);
  await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', qemuOptions(config), `${image}.src`, image]);
  fs.rmSync(`${image}.src`);
  const check = await qemuCheck(image);
  if ((check.report?.['compressed-clusters'] ?? 0) === 0) throw new Error(`${image} has no compressed clusters to write onto`);
  return source;
}

describe.concurrent('images Cowbell writes pass qemu-img check and compare', { timeout: 60_000 }, () => {
  matrix.forEach((config, index) => {
    it(`${configName(config)}: created by Cowbell, random writes, zero writes and discards in two sessions`, async ({ expect }) => {
      const image = folder.file(`cowbell-${index}.qcow2`);
      const size = smallDiskSize(config);
      createImage({ path: image, size, ...cowbellOptions(config) });
      const model = new Uint8Array(size);
      const random = new SeededRandom(1000 + index);
      // One long write first: enough clusters for 512-byte clusters with 64-bit refcounts to outgrow their first refcount table.
      const bulk: GuestOp = { kind: 'write', offset: 4096 + 17, data: random.bytes(Math.floor(size * 0.8)) };
      writeRounds(image, model, [[bulk, ...randomGuestOps(random, size, config.clusterSize, opCount(config, 30))], randomGuestOps(random, size, config.clusterSize, opCount(config, 30))], semanticsOf(config, size, false));
      await expectImageHolds(expect, image, model);
    });
  });

  matrix.forEach((config, index) => {
    it(`${configName(config)}: made by qemu-img convert -c, written over compressed clusters by Cowbell`, async ({ expect }) => {
      const image = folder.file(`compressed-${index}.qcow2`);
      const model = await qemuCompressedImage(config, image, 2000 + index);
      const random = new SeededRandom(2000 + index);
      const size = model.length;
      writeRounds(image, model, [[...opsOnCompressed(config.clusterSize, random), ...randomGuestOps(random, size, config.clusterSize, opCount(config, 25))]], semanticsOf(config, size, false));
      await expectImageHolds(expect, image, model);
    });
  });

  // 1-bit refcounts cannot count the second reference a snapshot adds.
  matrix
    .filter((config) => config.refcountBits > 1)
    .forEach((config, index) => {
      it(`${configName(config)}: after qemu-img snapshot -c, Cowbell's writes copy shared clusters and leave the snapshot as it was`, async ({ expect }) => {
        const image = folder.file(`snapshot-${index}.qcow2`);
        const model = await qemuCompressedImage(config, image, 3000 + index);
        const taken = model.slice();
        await qemuImg(['snapshot', '-c', 'S', image]);
        const random = new SeededRandom(3000 + index);
        const size = model.length;
        const semantics = semanticsOf(config, size, false);
        const secondRound = [...randomGuestOps(random, size, config.clusterSize, opCount(config, 15)), { kind: 'write' as const, offset: 0, data: random.bytes(Math.min(size, 3 * config.clusterSize)) }];
        writeRounds(image, model, [[...opsOnCompressed(config.clusterSize, random), ...randomGuestOps(random, size, config.clusterSize, opCount(config, 25))], secondRound], semantics);
        await expectImageHolds(expect, image, model);
        expect(firstDifference(await rawOf(image, { snapshot: 'S' }), taken), 'first byte of the snapshot that changed').toBe(-1);
      });
    });

  // An overlay per cluster size and compat over a raw or qcow2 base, made by Cowbell or qemu-img in turn.
  const overlayConfigs = matrix.filter((config) => config.refcountBits === 16 && (config.compat === '0.10' || config.extendedL2 || config.clusterSize < 16 * KiB));
  overlayConfigs.forEach((config, index) => {
    const baseFormat = index % 2 === 0 ? 'qcow2' : 'raw';
    const creator = index % 4 < 2 ? 'Cowbell' : 'qemu-img';
    it(`${configName(config)}: an overlay made by ${creator} on a ${baseFormat} base, written by Cowbell (copy-on-write from the backing file)`, async ({ expect }) => {
      const caseFolder = folder.file(`overlay-${index}`);
      fs.mkdirSync(path.join(caseFolder, 'disks'), { recursive: true });
      const size = smallDiskSize(config);
      const baseBytes = new Uint8Array(size);
      baseBytes.set(new SeededRandom(4000 + index).bytes(size - 2 * config.clusterSize));
      const base = path.join(caseFolder, `base.${baseFormat}`);
      if (baseFormat === 'raw') fs.writeFileSync(base, baseBytes);
      else {
        fs.writeFileSync(`${base}.src`, baseBytes);
        await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', `${base}.src`, base]);
      }
      const overlay = path.join(caseFolder, 'disks', 'overlay.qcow2');
      if (creator === 'Cowbell') createImage({ path: overlay, ...cowbellOptions(config), backingFile: `../base.${baseFormat}`, backingFormat: baseFormat });
      else await qemuImg(['create', '-f', 'qcow2', '-o', qemuOptions(config), '-b', `../base.${baseFormat}`, '-F', baseFormat, overlay], { cwd: folder.path });
      const model = baseBytes.slice();
      const random = new SeededRandom(4000 + index);
      const ops: GuestOp[] = [
        { kind: 'write', offset: config.clusterSize / 2 + 5, data: random.bytes(config.clusterSize) },
        { kind: 'zero', offset: 2 * config.clusterSize, length: config.clusterSize },
        { kind: 'discard', offset: 3 * config.clusterSize, length: 2 * config.clusterSize },
        { kind: 'zero', offset: 5 * config.clusterSize + 3, length: 10 },
        ...randomGuestOps(random, size, config.clusterSize, opCount(config, 30)),
      ];
      writeRounds(overlay, model, [ops, randomGuestOps(random, size, config.clusterSize, opCount(config, 10))], semanticsOf(config, size, true));
      await expectImageHolds(expect, overlay, model);
    });
  });

  it('a three-level chain: Cowbell writes over subclusters qemu-io wrote in an extended-L2 top, over a v2 middle over a raw base', async ({ expect }) => {
    const root = folder.file('chain');
    for (const sub of ['base', 'middle', 'top']) fs.mkdirSync(path.join(root, sub), { recursive: true });
    const size = 3 * MiB;
    const random = new SeededRandom(6000);
    fs.writeFileSync(path.join(root, 'base', 'base.raw'), random.bytes(size));
    const middle = path.join(root, 'middle', 'middle.qcow2');
    const top = path.join(root, 'top', 'top.qcow2');
    await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=0.10,cluster_size=4096', '-b', '../base/base.raw', '-F', 'raw', middle], { cwd: folder.path });
    await qemuIo(middle, ['write -P 0x61 5000 70000', 'write -z 200k 64k', 'discard 400k 64k'], { cwd: folder.path });
    await qemuImg(['create', '-f', 'qcow2', '-o', 'compat=1.1,cluster_size=65536,extended_l2=on', '-b', '../middle/middle.qcow2', '-F', 'qcow2', top], { cwd: folder.path });
    // Subclusters are 2 KiB: allocated, zeroed and left to the backing file side by side within clusters.
    await qemuIo(top, ['write -P 0x62 6144 4096', 'write -z 16384 2048', 'write -P 0x63 131072 2048', 'write -z 200704 10240', 'write -P 0x64 400000 3000'], { cwd: folder.path });
    const model = await rawOf(top);
    const config: FormatConfig = { compat: '1.1', clusterSize: 65536, refcountBits: 16, extendedL2: true, compressionType: 'zlib' };
    const ops: GuestOp[] = [
      { kind: 'write', offset: 7000, data: random.bytes(100) },
      { kind: 'write', offset: 16000, data: random.bytes(1000) },
      { kind: 'write', offset: 131072 + 2048, data: random.bytes(2048) },
      { kind: 'zero', offset: 200704 + 1000, length: 500 },
      { kind: 'discard', offset: 393216, length: 65536 },
      ...randomGuestOps(random, size, config.clusterSize, 20),
    ];
    writeRounds(top, model, [ops], semanticsOf(config, size, true));
    await expectImageHolds(expect, top, model);
  });

  it('512-byte clusters with 64-bit refcounts: the refcount table moves several times as the image grows', async ({ expect }) => {
    const config: FormatConfig = { compat: '1.1', clusterSize: 512, refcountBits: 64, extendedL2: false, compressionType: 'zlib' };
    const image = folder.file('growth.qcow2');
    const size = 12 * MiB;
    createImage({ path: image, size, ...cowbellOptions(config) });
    const tableClusters = (): number => {
      const header = Buffer.alloc(64);
      const fd = fs.openSync(image, 'r');
      fs.readSync(fd, header, 0, 64, 0);
      fs.closeSync(fd);
      return header.readUInt32BE(56);
    };
    const before = tableClusters();
    const model = new Uint8Array(size);
    const random = new SeededRandom(5000);
    // Each 512-byte refcount table cluster covers 2 MiB of file; write about 10 MiB in steps.
    const rounds: GuestOp[][] = [];
    for (let step = 0; step < 5; step++) rounds.push([{ kind: 'write', offset: step * 2 * MiB + 1, data: random.bytes(2 * MiB) }, ...randomGuestOps(random, size, 512, 5)]);
    writeRounds(image, model, rounds, semanticsOf(config, size, false));
    expect(tableClusters()).toBeGreaterThan(2 * before);
    await expectImageHolds(expect, image, model);
  });
});

describe('header feature bits when Cowbell writes', () => {
  it('autoclear bits Cowbell does not maintain (known or unknown) are cleared, durably, before the first change; reading leaves them', async () => {
    const image = folder.file('autoclear.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    const autoclear = (): bigint => {
      const header = Buffer.alloc(8);
      const fd = fs.openSync(image, 'r');
      fs.readSync(fd, header, 0, 8, 88);
      fs.closeSync(fd);
      return header.readBigUInt64BE();
    };
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, Buffer.from([0, 0, 0, 0, 0, 0, 0, 0x22]), 0, 8, 88);
    fs.closeSync(fd);

    Qcow2Image.open(image).close();
    const reader = Qcow2Image.open(image, { readOnly: true });
    reader.read(0, 4096);
    reader.close();
    expect(autoclear()).toBe(0x22n);

    const writer = Qcow2Image.open(image);
    try {
      writer.write(new Uint8Array(100).fill(3), 1000);
      expect(autoclear()).toBe(0n);
    } finally {
      writer.close();
    }
    expect((await qemuCheck(image)).code).toBe(0);
  });

  it('a repair and a passphrase change clear unknown autoclear bits too (as qemu-img check -r and amend), keeping the dirty bitmaps\' bit', { timeout: 60_000 }, async () => {
    const autoclearOf = (file: string): bigint => fs.readFileSync(file).readBigUInt64BE(88);
    const setAutoclear = (file: string, bits: bigint): void => {
      const fd = fs.openSync(file, 'r+');
      const bytes = Buffer.alloc(8);
      bytes.writeBigUInt64BE(bits);
      fs.writeSync(fd, bytes, 0, 8, 88);
      fs.closeSync(fd);
    };
    const repaired = folder.file('autoclear-repair.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', repaired, '1M']);
    await qemuIo(repaired, ['write -P 0x33 0 128k']);
    await qemuImg(['bitmap', '--add', repaired, 'backup']);
    expect(autoclearOf(repaired)).toBe(0x1n);
    setAutoclear(repaired, 0x81n);
    // A leaked cluster for the repair to free.
    setRefcount(repaired, appendCluster(repaired), 1);
    expect(checkImagePath(repaired, { repair: 'leaks' })['leaks-fixed']).toBe(1);
    expect(autoclearOf(repaired)).toBe(0x1n);
    expect((await qemuCheck(repaired)).code).toBe(0);
    expect((await qemuImg(['info', repaired])).stdout).toMatch(/name: backup/);

    const encrypted = folder.file('autoclear-luks.qcow2');
    await createLuksImage(encrypted, 'old-pass');
    setAutoclear(encrypted, 0x80n);
    changeKeySlots(encrypted, { passphrase: Buffer.from('old-pass'), action: 'change', newPassphrase: Buffer.from('new-pass'), iterations: 1000 });
    expect(autoclearOf(encrypted)).toBe(0n);
  });
});
