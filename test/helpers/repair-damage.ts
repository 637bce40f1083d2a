/**
 * The five kinds of damage qemu-img check -r all repairs that issue 21 asks Cowbell to repair too,
 * each as a recipe on an image qemu made (qemu-iotests 060, 080 and 261 do the same by hand).
 */
import * as poke from './qcow2-poke.ts';
import { qemuImg, qemuIo } from './qemu.ts';

const MiB = 1024 * 1024;

/** 4 KiB clusters, 16 MiB; two snapshots, each followed by writes that copy L2 tables, so snapshots own L2 tables no one else uses. */
export async function buildWithSnapshots(path: string, compat: '0.10' | '1.1'): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=4k,compat=${compat}`, path, '16M']);
  await qemuIo(path, ['write -P 1 0 256k', 'write -P 2 4M 64k']);
  await qemuImg(['snapshot', '-c', 'one', path]);
  await qemuIo(path, ['write -P 3 4M 64k', 'write -P 4 0 8k']);
  await qemuImg(['snapshot', '-c', 'two', path]);
  await qemuIo(path, ['write -P 5 8M 8k']);
}

/** Two snapshots taken back to back share every L2 table; a write then leaves them tables the active disk no longer uses. */
export async function buildWithSharedSnapshots(path: string): Promise<void> {
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', path, '16M']);
  await qemuIo(path, ['write -P 1 0 256k', 'write -P 2 8M 4k']);
  await qemuImg(['snapshot', '-c', 'one', path]);
  await qemuImg(['snapshot', '-c', 'two', path]);
  await qemuIo(path, ['write -P 4 0 8k']);
}

export interface Damage {
  name: string;
  /** The image buildWithSnapshots must make for it (when `build` is not given). */
  compat: '0.10' | '1.1';
  /** Builds the image to damage, when buildWithSnapshots does not fit. */
  build?: (path: string) => Promise<void>;
  apply(path: string): Promise<void>;
}

export const damages: Damage[] = [
  {
    name: 'no refcount table at all (offset 0, 0 clusters)',
    compat: '1.1',
    async apply(path) {
      poke.writeU64(path, 48, 0n);
      poke.writeU32(path, 56, 0);
    },
  },
  {
    name: 'a refcount table of zero clusters',
    compat: '1.1',
    async apply(path) {
      poke.writeU32(path, 56, 0);
    },
  },
  {
    name: 'a snapshot table past the end of the file',
    compat: '1.1',
    async apply(path) {
      const { fileSize, clusterBytes } = poke.layout(path);
      poke.writeU64(path, 64, BigInt((Math.ceil(fileSize / clusterBytes) + 64) * clusterBytes));
    },
  },
  {
    name: 'a version 2 image botched to version 3 (snapshots without the v3 extra data)',
    compat: '0.10',
    async apply(path) {
      poke.botchToVersion3(path, [0, 8]);
    },
  },
  {
    name: 'an inactive L2 table overwritten by guest data (qemu-iotests 060)',
    compat: '1.1',
    async apply(path) {
      const l2 = poke.inactiveL2Tables(path)[0] ?? 0;
      // An active data entry pointing at the table (as a refcount bug would), then a guest write through it.
      poke.writeU64(path, poke.l2EntryPosition(path, 8 * MiB), poke.COPIED | BigInt(l2));
      await qemuIo(path, ['write -P 3 8M 512']);
    },
  },
  {
    name: 'an L2 table two snapshots share overwritten by guest data',
    compat: '1.1',
    build: buildWithSharedSnapshots,
    async apply(path) {
      const l2 = poke.inactiveL2Tables(path)[0] ?? 0;
      poke.writeU64(path, poke.l2EntryPosition(path, 8 * MiB), poke.COPIED | BigInt(l2));
      await qemuIo(path, ['write -P 3 8M 512']);
    },
  },
];
