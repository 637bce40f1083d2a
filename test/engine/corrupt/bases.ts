/**
 * The valid images the damaged-image corpus starts from, each made by qemu-img / qemu-io the way
 * the qemu-iotests it follows make theirs (small disks, so a case costs milliseconds).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { qemuCheck, qemuImg, qemuIo, runTool } from '../../helpers/qemu.ts';
import { compressibleBytes } from '../../helpers/seeded-random.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The backing file overlays name by a relative path: placed beside every case's image. */
export const BACKING_NAME = 'corrupt-backing.qcow2';

interface BaseRecipe {
  name: string;
  build(file: string, folder: string): Promise<void>;
}

async function create(file: string, options: string, size: number, extra: string[] = []): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...extra, file, String(size)]);
}

/** Data, a snapshot, a copy-on-write over it, a second snapshot, one more write. */
async function withSnapshots(file: string, options: string): Promise<void> {
  await create(file, options, 4 * MiB);
  await qemuIo(file, ['write -P 0x11 0 128k', 'write -P 0x22 1M 64k']);
  await qemuImg(['snapshot', '-c', 'one', file]);
  await qemuIo(file, ['write -P 0x33 0 64k']);
  await qemuImg(['snapshot', '-c', 'two', file]);
  await qemuIo(file, ['write -P 0x44 64k 4k']);
}

async function compressed(file: string, options: string): Promise<void> {
  const raw = `${file}.raw`;
  fs.writeFileSync(raw, compressibleBytes(MiB, 21));
  await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', options, raw, file]);
  fs.rmSync(raw);
}

export const BASES: BaseRecipe[] = [
  {
    name: 'v3',
    async build(file) {
      await create(file, 'compat=1.1', 4 * MiB);
      await qemuIo(file, ['write -P 0x11 0 128k', 'write -P 0x22 1M 64k', 'write -z 2M 64k']);
    },
  },
  { name: 'v3-snap', build: (file) => withSnapshots(file, 'compat=1.1') },
  { name: 'v2-snap', build: (file) => withSnapshots(file, 'compat=0.10') },
  {
    // 108: 512-byte clusters, so one refcount block covers only 128 KiB and an L2 table 32 KiB.
    name: 'v3-512',
    async build(file) {
      await create(file, 'compat=1.1,cluster_size=512', MiB);
      await qemuIo(file, ['write -P 0x55 0 0x1b200']);
      await qemuImg(['snapshot', '-c', 'small', file]);
      await qemuIo(file, ['write -P 0x56 0 4k']);
    },
  },
  {
    name: 'v3-compressed',
    async build(file) {
      await compressed(file, 'compat=1.1,cluster_size=4096');
      await qemuImg(['snapshot', '-c', 'packed', file]);
      await qemuIo(file, ['write -P 0x66 4k 6k']);
    },
  },
  { name: 'v3-zstd', build: (file) => compressed(file, 'compat=1.1,cluster_size=65536,compression_type=zstd') },
  {
    name: 'v3-rc1',
    async build(file) {
      await create(file, 'compat=1.1,cluster_size=4096,refcount_bits=1', 4 * MiB);
      await qemuIo(file, ['write -P 0x77 0 40k', 'write -P 0x78 2M 8k']);
    },
  },
  {
    // 112: with 2-bit refcounts a third reference to a cluster does not fit.
    name: 'v3-rc2-full',
    async build(file) {
      await create(file, 'compat=1.1,cluster_size=4096,refcount_bits=2', 4 * MiB);
      await qemuIo(file, ['write -P 0x79 0 16k']);
      await qemuImg(['snapshot', '-c', 'a', file]);
      await qemuImg(['snapshot', '-c', 'b', file]);
    },
  },
  {
    name: 'v3-rc64-snap',
    async build(file) {
      await create(file, 'compat=1.1,cluster_size=65536,refcount_bits=64', 4 * MiB);
      await qemuIo(file, ['write -P 0x7a 0 128k']);
      await qemuImg(['snapshot', '-c', 'wide', file]);
    },
  },
  {
    name: 'v3-extl2',
    async build(file) {
      await create(file, 'compat=1.1,cluster_size=32768,extended_l2=on', 4 * MiB);
      await qemuIo(file, ['write -P 0x88 0 3k', 'write -z 64k 4k', 'write -P 0x89 1M 32k']);
      await qemuImg(['snapshot', '-c', 'sub', file]);
      await qemuIo(file, ['write -P 0x8a 1k 1k']);
    },
  },
  {
    // 039: a writer killed with lazy refcounts on leaves the dirty bit and refcounts behind.
    name: 'v3-lazy-dirty',
    async build(file) {
      await create(file, 'compat=1.1,lazy_refcounts=on', 4 * MiB);
      await runTool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x99 0 512', '-c', 'write -P 0x9a 1M 64k', '-c', 'sigraise 9', file], { okCodes: [137] });
    },
  },
  {
    // 029: an image grown after its snapshot, so the snapshot's L1 table is the smaller one.
    name: 'v3-grown',
    async build(file) {
      await create(file, 'compat=1.1,cluster_size=4096', 8 * MiB);
      await qemuIo(file, ['write -P 0xaa 0 8k', 'write -P 0xab 7M 4k']);
      await qemuImg(['snapshot', '-c', 'small', file]);
      await qemuImg(['resize', '-q', file, String(16 * MiB)]);
      await qemuIo(file, ['write -P 0xac 12M 4k']);
    },
  },
  {
    // 274: an overlay over a shorter backing file.
    name: 'v3-backing',
    async build(file, folder) {
      const backing = path.join(folder, BACKING_NAME);
      await create(backing, 'compat=1.1', 2 * MiB);
      await qemuIo(backing, ['write -P 0xbb 0 2M']);
      await create(file, 'compat=1.1', 4 * MiB, ['-b', BACKING_NAME, '-F', 'qcow2']);
      await qemuIo(file, ['write -P 0xbc 1M 64k', 'write -P 0xbd 3M 64k']);
      await qemuImg(['snapshot', '-c', 'over', file]);
    },
  },
];

/** Builds every base in `folder` (`<name>.qcow2`, the backing file beside them); each must be clean. */
export async function buildBases(folder: string): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for (const base of BASES) {
    const file = path.join(folder, `${base.name}.qcow2`);
    await base.build(file, folder);
    const check = await qemuCheck(file);
    // The killed writer's image has leaks and a dirty bit on purpose.
    if (check.code !== 0 && base.name !== 'v3-lazy-dirty') throw new Error(`Corpus base ${base.name} is not clean:\n${check.output}`);
    files.set(base.name, file);
  }
  return files;
}
