/**
 * createImage: every option lands in the image as qemu-img reads it, the new image passes
 * `qemu-img check`, invalid combinations are refused with INVALID_ARGUMENT, and an existing file
 * is never replaced.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImage, type CreateOptions } from '../../../src/shared/qcow2/image/create.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { qemuCheck, qemuCompare, qemuImg, qemuInfo, qemuIo, qemuMap, rawOf, tempDir, type QemuInfo, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

let counter = 0;

async function createAndCheck(options: CreateOptions & { size?: number }, name = `created-${counter++}.qcow2`): Promise<{ image: string; info: QemuInfo }> {
  const image = folder.file(name);
  createImage({ path: image, ...options });
  const check = await qemuCheck(image);
  expect(check.output).not.toMatch(/ERROR|Leaked/);
  expect(check.code).toBe(0);
  return { image, info: await qemuInfo(image) };
}

function formatData(info: QemuInfo): NonNullable<QemuInfo['format-specific']>['data'] {
  return info['format-specific']?.data ?? {};
}

describe.concurrent('createImage options as qemu-img info reads them', { timeout: 60_000 }, () => {
  for (const clusterSize of [512, 1 * KiB, 4 * KiB, 64 * KiB, 2 * MiB]) {
    it(`cluster size ${clusterSize}`, async ({ expect }) => {
      const { info } = await createAndCheck({ size: 3 * MiB, clusterSize });
      expect(info['cluster-size']).toBe(clusterSize);
      expect(info['virtual-size']).toBe(3 * MiB);
    });
  }

  for (const compat of ['0.10', '1.1'] as const) {
    it(`compat ${compat}`, async ({ expect }) => {
      const { image, info } = await createAndCheck({ size: MiB, compat });
      expect(formatData(info).compat).toBe(compat);
      expect(readImageInfo(image)['format-specific'].data.compat).toBe(compat);
    });
  }

  for (const refcountBits of [1, 2, 4, 8, 16, 32, 64]) {
    it(`refcount bits ${refcountBits}, and qemu-io can write to the image`, async ({ expect }) => {
      const { image, info } = await createAndCheck({ size: MiB, refcountBits, clusterSize: 4096 });
      expect(formatData(info)['refcount-bits']).toBe(refcountBits);
      await qemuIo(image, ['write -P 0x42 1000 300000']);
      expect((await qemuCheck(image)).code).toBe(0);
    });
  }

  for (const clusterSize of [16 * KiB, 64 * KiB, 2 * MiB]) {
    it(`extended L2 with ${clusterSize / KiB} KiB clusters`, async ({ expect }) => {
      const { info } = await createAndCheck({ size: 4 * MiB, clusterSize, extendedL2: true });
      expect(formatData(info)['extended-l2']).toBe(true);
      expect(info['cluster-size']).toBe(clusterSize);
    });
  }

  it('zstd compression, which qemu-img convert -c then uses', async ({ expect }) => {
    const { image, info } = await createAndCheck({ size: MiB, compressionType: 'zstd' });
    expect(formatData(info)['compression-type']).toBe('zstd');
    const compressed = folder.file('zstd-converted.qcow2');
    await qemuImg(['convert', '-c', '-f', 'qcow2', '-O', 'qcow2', '-o', 'compression_type=zstd', image, compressed]);
    expect(formatData(await qemuInfo(compressed))['compression-type']).toBe('zstd');
  });

  for (const backingFormat of ['qcow2', 'raw'] as const) {
    it(`a ${backingFormat} backing file named relative to the image, its size taken from the backing file`, async ({ expect }) => {
      const caseFolder = folder.file(`backing-${backingFormat}`);
      fs.mkdirSync(path.join(caseFolder, 'disks'), { recursive: true });
      const baseBytes = new SeededRandom(7).bytes(2 * MiB + 512);
      const base = path.join(caseFolder, `base.${backingFormat}`);
      if (backingFormat === 'raw') fs.writeFileSync(base, baseBytes);
      else {
        fs.writeFileSync(`${base}.src`, baseBytes);
        await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', `${base}.src`, base]);
      }
      const { image, info } = await createAndCheck({ backingFile: `../base.${backingFormat}`, backingFormat }, `backing-${backingFormat}/disks/overlay.qcow2`);
      expect(info['backing-filename']).toBe(`../base.${backingFormat}`);
      expect(info['backing-filename-format']).toBe(backingFormat);
      expect(info['virtual-size']).toBe(2 * MiB + 512);
      fs.writeFileSync(`${image}.expected`, baseBytes);
      expect((await qemuCompare(image, `${image}.expected`)).code).toBe(0);
    });
  }

  it('a v3 image with 512-byte clusters and a backing file (the header has no room for a feature name table, as in QEMU)', async ({ expect }) => {
    const base = folder.file('small-cluster-base.raw');
    const baseBytes = new SeededRandom(8).bytes(256 * KiB);
    fs.writeFileSync(base, baseBytes);
    const { image, info } = await createAndCheck({ compat: '1.1', clusterSize: 512, backingFile: 'small-cluster-base.raw', backingFormat: 'raw' });
    expect(info['backing-filename']).toBe('small-cluster-base.raw');
    expect(info['cluster-size']).toBe(512);
    const opened = Qcow2Image.open(image);
    try {
      opened.write(new Uint8Array(700).fill(9), 1000);
    } finally {
      opened.close();
    }
    baseBytes.fill(9, 1000, 1700);
    expect(Buffer.from(await rawOf(image)).equals(Buffer.from(baseBytes))).toBe(true);
  });

  for (const [label, options] of [
    ['v3 64 KiB', { compat: '1.1' }],
    ['v2', { compat: '0.10' }],
    ['512-byte clusters', { clusterSize: 512 }],
    ['extended L2', { extendedL2: true }],
  ] as const) {
    it(`preallocation=metadata (${label}): qemu-img map shows every guest byte preallocated, as in QEMU's own image`, async ({ expect }) => {
      const size = 2 * MiB + 1536;
      const { image } = await createAndCheck({ size, preallocation: 'metadata', ...options });
      const map = await qemuMap(image);
      // With extended L2, QEMU reserves each cluster (an offset) but leaves its subclusters unallocated: zeros, not data.
      if ('extendedL2' in options) expect(map.every((run) => !run.data && run.zero && run.depth === 0 && run.offset !== undefined)).toBe(true);
      else expect(map.every((run) => run.data && run.depth === 0)).toBe(true);
      expect(map.reduce((total, run) => total + run.length, 0)).toBe(size);
      expect((await rawOf(image)).every((byte) => byte === 0)).toBe(true);
    });
  }

  it('preallocation=metadata with extended L2 over a backing file keeps the backing data visible (as qemu-img does)', async ({ expect }) => {
    const base = folder.file('prealloc-base.raw');
    const baseBytes = new SeededRandom(9).bytes(MiB);
    fs.writeFileSync(base, baseBytes);
    const { image } = await createAndCheck({ extendedL2: true, preallocation: 'metadata', backingFile: 'prealloc-base.raw', backingFormat: 'raw' });
    expect((await qemuCompare(image, base)).code).toBe(0);
    const opened = Qcow2Image.open(image);
    try {
      expect(Buffer.from(opened.read(0, MiB)).equals(Buffer.from(baseBytes))).toBe(true);
      opened.write(new Uint8Array(100).fill(1), 70_000);
    } finally {
      opened.close();
    }
    baseBytes.fill(1, 70_000, 70_100);
    fs.writeFileSync(base + '.expected', baseBytes);
    expect((await qemuCompare(image, base + '.expected')).code).toBe(0);
    expect((await qemuCheck(image)).code).toBe(0);
  });
});

describe('createImage refuses what it cannot make', { timeout: 30_000 }, () => {
  const invalid: [string, CreateOptions][] = [
    ['a cluster size that is not a power of two', { size: MiB, clusterSize: 3000 }],
    ['clusters smaller than 512 bytes', { size: MiB, clusterSize: 256 }],
    ['clusters larger than 2 MiB', { size: MiB, clusterSize: 4 * MiB }],
    ['refcount bits that are not a power of two', { size: MiB, refcountBits: 3 }],
    ['refcount bits over 64', { size: MiB, refcountBits: 128 }],
    ['compat 0.10 with refcount bits other than 16', { size: MiB, compat: '0.10', refcountBits: 1 }],
    ['compat 0.10 with extended L2', { size: MiB, compat: '0.10', extendedL2: true }],
    ['extended L2 with clusters under 16 KiB', { size: MiB, clusterSize: 4096, extendedL2: true }],
    ['zstd with compat 0.10', { size: MiB, compat: '0.10', compressionType: 'zstd' }],
    ['no size and no backing file', {}],
    ['a negative size', { size: -512 }],
    ['a size that is not an integer', { size: 1.5 }],
    ['a backing format without a backing file', { size: MiB, backingFormat: 'raw' }],
    ['an empty backing file name (qemu-img: "Expected backing file name, got empty string")', { size: MiB, backingFile: '', backingFormat: 'raw' }],
    ['a backing file with preallocation=metadata and no extended L2 (it would hide the backing data)', { size: MiB, backingFile: 'refusal-base.raw', backingFormat: 'raw', preallocation: 'metadata' }],
  ];

  for (const [label, options] of invalid) {
    it(`${label}: INVALID_ARGUMENT, and no file is left behind`, () => {
      fs.writeFileSync(folder.file('refusal-base.raw'), new Uint8Array(MiB));
      const image = folder.file('refused.qcow2');
      const before = fs.readdirSync(folder.path).sort();
      let thrown: unknown = null;
      try {
        createImage({ path: image, ...options });
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(Qcow2Error);
      expect((thrown as Qcow2Error).code).toBe('INVALID_ARGUMENT');
      expect(fs.existsSync(image)).toBe(false);
      expect(fs.readdirSync(folder.path).sort()).toEqual(before);
    });
  }

  it('a missing backing file: BACKING_NOT_FOUND, and no file is left behind', () => {
    const image = folder.file('orphan.qcow2');
    let thrown: unknown = null;
    try {
      createImage({ path: image, backingFile: 'nowhere.qcow2', backingFormat: 'qcow2' });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(Qcow2Error);
    expect((thrown as Qcow2Error).code).toBe('BACKING_NOT_FOUND');
    expect(fs.existsSync(image)).toBe(false);
  });

  it('an existing target is refused with INVALID_ARGUMENT and left untouched', async () => {
    const image = folder.file('existing.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    await qemuIo(image, ['write -P 0x5 0 4k']);
    const before = fs.readFileSync(image);
    const mtime = fs.statSync(image).mtimeMs;
    let thrown: unknown = null;
    try {
      createImage({ path: image, size: 2 * MiB });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(Qcow2Error);
    expect((thrown as Qcow2Error).code).toBe('INVALID_ARGUMENT');
    expect(fs.readFileSync(image).equals(before)).toBe(true);
    expect(fs.statSync(image).mtimeMs).toBe(mtime);
    expect(fs.readdirSync(folder.path).filter((name) => name.includes('existing'))).toEqual(['existing.qcow2']);
  });
});
