/**
 * The kinds of damage qemu-img check -r all repairs that issue 21 asks Cowbell to repair too, and
 * two qemu-img's repair leaves unusable (one table two states change, metadata under compressed
 * data), each as a recipe on an image qemu made (qemu-iotests 060, 080 and 261 do the same by hand).
 */
import * as fs from 'node:fs';
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

/** 256 KiB of text compressed by qemu-img (4 KiB clusters), grown to 16 MiB (the L1 table moves past the compressed data), then a snapshot. */
export async function buildCompressedWithSnapshot(path: string): Promise<void> {
  const raw = `${path}.raw`;
  fs.writeFileSync(raw, new Uint8Array(256 * 1024).map((_, index) => 97 + ((index * 7 + (index >> 12)) % 26)));
  await qemuImg(['convert', '-q', '-f', 'raw', '-c', '-O', 'qcow2', '-o', 'cluster_size=4k', raw, path]);
  fs.rmSync(raw);
  await qemuImg(['resize', '-q', path, '16M']);
  await qemuImg(['snapshot', '-c', 'one', path]);
}

/** The compressed entry lying last in the file gets a sector count that runs 1 KiB onto the next cluster, an L1 table. */
function compressedOntoSnapshotL1(path: string): void {
  const clusterBits = poke.readU32(path, 20);
  const offsetBits = BigInt(62 - (clusterBits - 8));
  const l2Offset = Number(poke.readU64(path, Number(poke.readU64(path, 40))) & 0x00ff_ffff_ffff_fe00n);
  let last = { position: -1, hostOffset: -1n };
  for (let index = 0; index < 2 ** clusterBits / 8; index++) {
    const entry = poke.readU64(path, l2Offset + index * 8);
    const hostOffset = entry & ((1n << offsetBits) - 1n);
    if (((entry >> 62n) & 1n) === 1n && hostOffset > last.hostOffset) last = { position: l2Offset + index * 8, hostOffset };
  }
  const next = ((last.hostOffset >> BigInt(clusterBits)) + 1n) << BigInt(clusterBits);
  const l1Tables = [poke.readU64(path, 40), ...poke.snapshotTable(path).map((entry) => BigInt(entry.l1Offset))];
  if (!l1Tables.includes(next)) throw new Error('no L1 table follows the compressed data');
  const sectors = (next + 1024n - 1n) / 512n - last.hostOffset / 512n;
  poke.writeU64(path, last.position, (1n << 62n) | (sectors << offsetBits) | last.hostOffset);
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
  {
    name: "a snapshot whose L1 table is the current state's",
    compat: '1.1',
    async apply(path) {
      const [one] = poke.snapshotTable(path);
      if (one === undefined) throw new Error('no snapshot');
      poke.writeU64(path, one.position, poke.readU64(path, 40));
    },
  },
  {
    name: 'a compressed cluster whose sector count runs onto an L1 table',
    compat: '1.1',
    build: buildCompressedWithSnapshot,
    async apply(path) {
      compressedOntoSnapshotL1(path);
    },
  },
];
