/**
 * The valid images the fuzzer mutates, each made by qemu-img / qemu-io inside the test run.
 * Recipes are referred to by name from saved regression fixtures, whose patches are byte offsets
 * into the seed: never change a recipe that fixtures use — add a new one under a new name.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { parseHeader, serializeHeaderArea } from '../../../src/shared/qcow2/format/header.ts';
import { debugfs, makeExtImage, makePartitionedDisk, placeImage } from '../../helpers/guest-filesystems.ts';
import { qemuCheck, qemuImg, qemuIo } from '../../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

/** A built seed: the image bytes and the files it needs beside it (its backing file). */
export interface SeedImage {
  name: string;
  bytes: Uint8Array;
  /** Files the image refers to by a relative name, to be placed next to it. */
  companions: { name: string; bytes: Uint8Array }[];
}

interface SeedRecipe {
  name: string;
  /** How often the random phase picks this seed (big images cost more to write per case). */
  weight: number;
  build(folder: string): Promise<void>;
}

/** Every recipe writes `image.qcow2` in its folder, plus any companions named `<seed>-…`. */
const IMAGE = 'image.qcow2';
const KiB = 1024;
const MiB = 1024 * 1024;

async function create(folder: string, options: string, size: number, extra: string[] = []): Promise<string> {
  const file = path.join(folder, IMAGE);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...extra, file, String(size)]);
  return file;
}

async function snapshot(file: string, name: string): Promise<void> {
  await qemuImg(['snapshot', '-c', name, file]);
}

/** A raw source with compressible text, noise and zeros, for `convert -c`. */
function mixedSource(size: number, seed: number): Uint8Array {
  const random = new SeededRandom(seed);
  const bytes = new Uint8Array(size);
  bytes.set(compressibleBytes(size / 4, seed), 0);
  bytes.set(random.bytes(size / 8), size / 4);
  bytes.set(compressibleBytes(size / 8, seed + 1), size / 2);
  bytes.set(random.bytes(3000), size - 3000);
  return bytes;
}

async function convertCompressed(folder: string, options: string, size: number, seed: number): Promise<string> {
  const raw = path.join(folder, 'source.raw');
  fs.writeFileSync(raw, mixedSource(size, seed));
  const file = path.join(folder, IMAGE);
  await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', options, raw, file]);
  fs.rmSync(raw);
  return file;
}

/** Adds an extension of a type no QEMU knows (odd length, so its padding is exercised too). */
function addUnknownExtension(file: string): void {
  const first = new Uint8Array(64 * KiB);
  const fd = fs.openSync(file, 'r+');
  try {
    fs.readSync(fd, first, 0, first.length, 0);
    const header = parseHeader(first, fs.fstatSync(fd).size);
    header.extensions.push({ type: 0x1c0ffee5, data: new TextEncoder().encode('cowbell unknown ext') });
    fs.writeSync(fd, serializeHeaderArea(header), 0, undefined, 0);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * A guest disk with a partition table and an ext filesystem (files/, issue 22): the raw disk made
 * by sfdisk or sgdisk and mke2fs -d, converted by qemu-img, a snapshot, then a debugfs change
 * written into the current state with `convert -n`. Mutations of its data clusters damage the
 * partition table and the filesystem's metadata (ext4's with inline data: small files and folders
 * kept in their inodes).
 */
async function guestFilesystemDisk(folder: string, table: 'mbr' | 'gpt', type: 'ext2' | 'ext4', clusterOptions: string): Promise<void> {
  const raw = path.join(folder, 'guest.raw');
  const partitions = table === 'mbr' ? [{ startMiB: 1, sizeMiB: 3, type: '83' }, { startMiB: 4, sizeMiB: 2, type: '5' }, { startMiB: 4.5, sizeMiB: 1, type: '83' }] : [{ startMiB: 1, sizeMiB: 3, type: '8300' }];
  await makePartitionedDisk(raw, 6, table, partitions);
  const filesystem = path.join(folder, 'guest.fs');
  const random = new SeededRandom(table === 'mbr' ? 31 : 32);
  await makeExtImage(filesystem, 3, { 'etc/hostname': 'fuzz\n', 'etc/app.link': { symlink: '../bin/app' }, 'bin/app': random.bytes(40 * KiB), 'var/log/deep/x.log': compressibleBytes(20 * KiB, 5), 'empty': { folder: true } }, { type, mkfsArgs: ['-O', type === 'ext4' ? '^metadata_csum,inline_data' : '^metadata_csum', '-b', '1024'] });
  placeImage(raw, filesystem, MiB);
  const file = path.join(folder, IMAGE);
  await qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-o', clusterOptions, raw, file]);
  await snapshot(file, 'installed');
  const changed = path.join(folder, 'changed.bin');
  fs.writeFileSync(changed, random.bytes(30 * KiB));
  await debugfs(filesystem, [`write ${changed} /bin/app2`, 'rm /etc/hostname']);
  placeImage(raw, filesystem, MiB);
  await qemuImg(['convert', '-q', '-n', '-f', 'raw', '-O', 'qcow2', raw, file]);
  for (const leftover of [raw, filesystem, changed]) fs.rmSync(leftover);
}

export const SEED_RECIPES: SeedRecipe[] = [
  {
    name: 'v2-64k-snapshots',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=0.10,cluster_size=65536', 4 * MiB);
      await qemuIo(file, ['write -P 0x11 0 192k', 'write -P 0x12 1M 64k']);
      await snapshot(file, 'first');
      await qemuIo(file, ['write -P 0x21 64k 64k', 'write -P 0x22 3M 100k']);
      await snapshot(file, 'second');
      await qemuIo(file, ['write -P 0x31 0 4k']);
    },
  },
  {
    name: 'v3-512-zero-snapshots',
    weight: 2,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=512', 2 * MiB);
      await qemuIo(file, ['write -P 0xab 0 24k', 'write -z 32k 4k', 'write -P 1 1M 4k']);
      await snapshot(file, 'one');
      await qemuIo(file, ['write -P 2 0 2k', 'write -z -u 1M 2k', 'write -P 3 1536k 3k']);
      await snapshot(file, 'two');
      await qemuIo(file, ['write -P 4 2k 1k', 'discard 4k 1k']);
      await snapshot(file, 'three');
      await qemuIo(file, ['write -P 5 8k 512']);
    },
  },
  {
    name: 'v3-4k-rc1',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=4096,refcount_bits=1', 4 * MiB);
      await qemuIo(file, ['write -P 0x41 0 40k', 'write -z 64k 16k', 'write -P 0x42 2M 8k', 'write -z 12k 4k', 'discard 20k 4k']);
    },
  },
  {
    name: 'v3-1k-rc8-lazy',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=1024,refcount_bits=8,lazy_refcounts=on', 3 * MiB + 1536);
      await qemuIo(file, ['write -P 0x51 0 16k', 'write -P 0x52 3M 1536']);
      await snapshot(file, 'lazy');
      await qemuIo(file, ['write -P 0x53 4k 4k', 'write -z 8k 2k']);
    },
  },
  {
    name: 'v3-64k-rc64-snapshots',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=65536,refcount_bits=64', 4 * MiB);
      await qemuIo(file, ['write -P 0x61 0 128k', 'write -z 256k 64k']);
      await snapshot(file, 'a');
      await qemuIo(file, ['write -P 0x62 64k 64k']);
      await snapshot(file, 'b');
    },
  },
  {
    name: 'v3-32k-extl2',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=32768,extended_l2=on', 4 * MiB);
      await qemuIo(file, ['write -P 0x71 0 3k', 'write -P 0x72 40k 2k', 'write -z 64k 4k', 'write -P 0x73 1M 32k']);
      await snapshot(file, 'sub');
      await qemuIo(file, ['write -P 0x74 1k 1k', 'write -z -u 1M 1k', 'discard 96k 32k']);
    },
  },
  {
    name: 'v3-4k-compressed',
    weight: 2,
    async build(folder) {
      const file = await convertCompressed(folder, 'compat=1.1,cluster_size=4096', 1 * MiB, 7);
      await snapshot(file, 'packed');
      await qemuIo(file, ['write -P 0x81 4k 6k']);
    },
  },
  {
    name: 'v3-64k-zstd-compressed',
    weight: 1,
    async build(folder) {
      await convertCompressed(folder, 'compat=1.1,cluster_size=65536,compression_type=zstd', 2 * MiB, 8);
    },
  },
  {
    name: 'v2-512-compressed',
    weight: 1,
    async build(folder) {
      await convertCompressed(folder, 'compat=0.10,cluster_size=512', 256 * KiB, 9);
    },
  },
  {
    name: 'v3-64k-backing',
    weight: 1,
    async build(folder) {
      const base = path.join(folder, 'v3-64k-backing-base.qcow2');
      await qemuImg(['create', '-q', '-f', 'qcow2', base, String(4 * MiB)]);
      await qemuIo(base, ['write -P 0x91 0 1M']);
      const file = await create(folder, 'compat=1.1,cluster_size=65536', 4 * MiB, ['-b', path.basename(base), '-F', 'qcow2']);
      await qemuIo(file, ['write -P 0x92 32k 64k', 'write -z 512k 64k']);
      await snapshot(file, 'over');
    },
  },
  {
    name: 'v2-512-backing-raw',
    weight: 1,
    async build(folder) {
      const base = path.join(folder, 'v2-512-backing-raw-base.raw');
      fs.writeFileSync(base, compressibleBytes(512 * KiB, 3));
      const file = await create(folder, 'compat=0.10,cluster_size=512', 512 * KiB, ['-b', path.basename(base), '-F', 'raw']);
      await qemuIo(file, ['write -P 0xa1 1000 3000']);
    },
  },
  {
    name: 'v3-64k-unknown-extension',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=65536', 4 * MiB);
      addUnknownExtension(file);
      await qemuIo(file, ['write -P 0xb1 0 100k']);
      await snapshot(file, 'kept');
    },
  },
  {
    name: 'v3-64k-cowbell-snapshots',
    weight: 1,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=65536', 4 * MiB);
      await qemuIo(file, ['write -P 0xc1 0 128k']);
      const image = Qcow2Image.open(file);
      try {
        const root = createSnapshot(image, { name: 'root', now: new Date(0) });
        image.write(new Uint8Array(4096).fill(0xc2), 64 * KiB);
        createSnapshot(image, { name: 'child', parentId: root.id, now: new Date(0) });
      } finally {
        image.close();
      }
    },
  },
  {
    name: 'v3-64k-mbr-ext4',
    weight: 1,
    build: (folder) => guestFilesystemDisk(folder, 'mbr', 'ext4', 'compat=1.1,cluster_size=65536'),
  },
  {
    name: 'v3-4k-gpt-ext2',
    weight: 1,
    build: (folder) => guestFilesystemDisk(folder, 'gpt', 'ext2', 'compat=1.1,cluster_size=4096'),
  },
  {
    name: 'v3-2m',
    weight: 0.3,
    async build(folder) {
      const file = await create(folder, 'compat=1.1,cluster_size=2097152', 8 * MiB);
      await qemuIo(file, ['write -P 0xd1 0 4k', 'write -P 0xd2 6M 4k']);
      await snapshot(file, 'big');
    },
  },
];

export function seedRecipe(name: string): SeedRecipe {
  const recipe = SEED_RECIPES.find((candidate) => candidate.name === name);
  if (recipe === undefined) throw new Error(`No fuzz seed recipe named ${name}`);
  return recipe;
}

/** Builds a seed in its own folder under `root` and checks qemu-img finds it clean. */
export async function buildSeed(root: string, name: string): Promise<SeedImage> {
  const folder = path.join(root, name);
  fs.mkdirSync(folder, { recursive: true });
  await seedRecipe(name).build(folder);
  const file = path.join(folder, IMAGE);
  const check = await qemuCheck(file);
  if (check.code !== 0) throw new Error(`Fuzz seed ${name} is not clean for qemu-img check:\n${check.output}`);
  const companions = fs
    .readdirSync(folder)
    .filter((entry) => entry !== IMAGE)
    .map((entry) => ({ name: entry, bytes: new Uint8Array(fs.readFileSync(path.join(folder, entry))) }));
  return { name, bytes: new Uint8Array(fs.readFileSync(file)), companions };
}
