/**
 * Space usage against first principles. In a qcow2 image a state (the current one or a snapshot)
 * reaches its L1 table, the L2 tables that table names and the data clusters those name. A
 * cluster is a state's own ("exclusive") when no other state reaches it (refcount 1); otherwise
 * its data is "shared". A snapshot's own L1 table counts as its own; the current state's L1 is
 * metadata (it cannot be deleted). The images are qemu-img's with whole-cluster writes, so every
 * figure below is a count of clusters worked out by hand.
 *
 * "Frees exactly its exclusive bytes" is measured as the drop in clusters with a non-zero
 * refcount, on images qemu-img check finds clean before and after (no leaks, no wrong refcounts:
 * so the count is the clusters something reaches). qemu-img check's own "allocated-clusters" is no
 * help here: it counts only the guest clusters the current state maps.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import type { UsageReport } from '../../../src/shared/qcow2/model.ts';
import { readUsage, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { qemuCheck, qemuImg, qemuImgTimingPbkdf2, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectCheckClean } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Clusters with a non-zero refcount. */
function allocatedClusters(image: string): number {
  const opened = Qcow2Image.open(image, { readOnly: true, openBacking: false });
  try {
    const clusters = Math.ceil(opened.file.size() / opened.clusterBytes);
    let count = 0;
    for (let cluster = 0; cluster < clusters; cluster++) if (opened.refcounts.get(cluster) > 0) count++;
    return count;
  } finally {
    opened.close();
  }
}

function snapshotUsage(report: UsageReport, name: string): { exclusiveBytes: number; sharedBytes: number } {
  const entry = report.snapshots.find((snapshot) => snapshot.name === name);
  if (entry === undefined) throw new Error(`no snapshot ${name} in the usage report`);
  return { exclusiveBytes: entry.exclusiveBytes, sharedBytes: entry.sharedBytes };
}

describe('space usage from first principles', { timeout: 60_000 }, () => {
  it('64 KiB clusters, one L2 table: own and shared bytes per state, metadata, and what a delete or a revert frees', async ({ expect }) => {
    const C = 64 * KiB;
    const image = folder.file('usage-64k.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, image, String(8 * MiB)]);
    await qemuIo(image, [`write -P 1 0 ${10 * C}`]);
    // The current state: its L2 table and 10 data clusters, all its own.
    let usage = readUsage(image);
    expect(usage.current).toEqual({ exclusiveBytes: 11 * C, sharedBytes: 0 });
    // Header, refcount table, one refcount block, L1, L2.
    expect(usage.metadataBytes).toBe(5 * C);

    takeSnapshot(image, 'A');
    usage = readUsage(image);
    // A owns only its L1 copy; the L2 table and the 10 clusters are shared with the current state.
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: 1 * C, sharedBytes: 10 * C });
    expect(usage.current).toEqual({ exclusiveBytes: 0, sharedBytes: 10 * C });

    // N = 3 new clusters after A: the current state copies the L2 table and owns it and the 3 clusters.
    await qemuIo(image, [`write -P 2 ${20 * C} ${3 * C}`]);
    usage = readUsage(image);
    expect(usage.current).toEqual({ exclusiveBytes: (1 + 3) * C, sharedBytes: 10 * C });
    // A is now the only one to reach the old L2 table.
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: (1 + 1) * C, sharedBytes: 10 * C });

    // Overwriting 2 shared clusters: the current state gets new copies; the old ones become A's own.
    await qemuIo(image, [`write -P 3 0 ${2 * C}`]);
    usage = readUsage(image);
    expect(usage.current).toEqual({ exclusiveBytes: (1 + 3 + 2) * C, sharedBytes: 8 * C });
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: (1 + 1 + 2) * C, sharedBytes: 8 * C });

    takeSnapshot(image, 'B');
    usage = readUsage(image);
    // B shares the current L2 table and its 13 data clusters; it owns its L1 copy.
    expect(snapshotUsage(usage, 'B')).toEqual({ exclusiveBytes: 1 * C, sharedBytes: 13 * C });
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: 4 * C, sharedBytes: 8 * C });
    expect(usage.current).toEqual({ exclusiveBytes: 0, sharedBytes: 13 * C });
    // Header, refcount table and block, three L1 tables, two L2 tables, the snapshot table.
    expect(usage.metadataBytes).toBe(9 * C);
    // Data: the 10 first clusters, the 3 new ones, the 2 new copies.
    expect(usage.allocatedBytes).toBe((9 + 15) * C);
    expect(usage.leakedBytes).toBe(0);
    expect(allocatedClusters(image)).toBe(24);

    // Deleting A frees exactly A's own bytes (by Cowbell, and by qemu-img on a copy).
    const copy = `${image}.copy`;
    fs.copyFileSync(image, copy);
    await expectFrees(expect, image, 4 * C, C, () => removeSnapshot(image, 'A'));
    await expectFrees(expect, copy, 4 * C, C, () => qemuImg(['snapshot', '-d', 'A', copy]));

    // Reverting to B frees what only the current state held: after 1 new cluster, that cluster and its L2 copy.
    await qemuIo(image, [`write -P 4 ${30 * C} ${C}`]);
    usage = readUsage(image);
    expect(usage.current).toEqual({ exclusiveBytes: 2 * C, sharedBytes: 13 * C });
    await expectFrees(expect, image, usage.current.exclusiveBytes, C, () => revertToSnapshot(image, 'B'));
    expect(readUsage(image).current).toEqual({ exclusiveBytes: 0, sharedBytes: 13 * C });
  });

  it('4 KiB clusters, four L2 tables: a write in one table leaves the others shared, and each state owns only what differs', async ({ expect }) => {
    const C = 4 * KiB;
    const TABLE = 512 * C; // guest bytes one L2 table covers
    const image = folder.file('usage-4k.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, image, String(4 * TABLE)]);
    // 8 clusters under table 0 and 8 under table 2.
    await qemuIo(image, [`write -P 1 0 ${8 * C}`, `write -P 2 ${2 * TABLE} ${8 * C}`]);
    takeSnapshot(image, 'A');
    // 5 clusters rewritten under table 2: the current state copies that table only.
    await qemuIo(image, [`write -P 3 ${2 * TABLE} ${5 * C}`]);
    let usage = readUsage(image);
    expect(usage.current).toEqual({ exclusiveBytes: (1 + 5) * C, sharedBytes: (8 + 3) * C });
    // A: its L1, the old table 2 and the 5 old clusters; table 0 and its 8 clusters, and 3 clusters under table 2, are shared.
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: (1 + 1 + 5) * C, sharedBytes: (8 + 3) * C });

    takeSnapshot(image, 'B');
    await qemuIo(image, [`write -P 4 ${3 * TABLE} ${2 * C}`]);
    usage = readUsage(image);
    // A new table 3 with 2 clusters, only the current state's.
    expect(usage.current).toEqual({ exclusiveBytes: (1 + 2) * C, sharedBytes: 16 * C });
    expect(snapshotUsage(usage, 'B')).toEqual({ exclusiveBytes: 1 * C, sharedBytes: 16 * C });
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: 7 * C, sharedBytes: 11 * C });
    await expectFrees(expect, image, 7 * C, C, () => removeSnapshot(image, 'A'));
    // The last snapshot: its L1, and the snapshot table with it.
    await expectFrees(expect, image, 1 * C, C, () => removeSnapshot(image, 'B'), C);
    // With no snapshot left, everything is the current state's own.
    expect(readUsage(image).current).toEqual({ exclusiveBytes: (3 + 8 + 8 + 2) * C, sharedBytes: 0 });
  });

  it('extended L2: a cluster with one subcluster written still holds a whole host cluster, and frees one when deleted', async ({ expect }) => {
    const C = 64 * KiB;
    const image = folder.file('usage-extl2.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C},extended_l2=on`, image, String(4 * MiB)]);
    // One 2 KiB subcluster in each of 3 clusters.
    await qemuIo(image, [`write -P 1 0 2k`, `write -P 1 ${C} 2k`, `write -P 1 ${2 * C} 2k`]);
    takeSnapshot(image, 'A');
    await qemuIo(image, [`write -P 2 0 ${3 * C}`]);
    const usage = readUsage(image);
    expect(usage.current).toEqual({ exclusiveBytes: (1 + 3) * C, sharedBytes: 0 });
    expect(snapshotUsage(usage, 'A')).toEqual({ exclusiveBytes: (1 + 1 + 3) * C, sharedBytes: 0 });
    await expectFrees(expect, image, 5 * C, C, () => removeSnapshot(image, 'A'), C);
  });

  it('a disk preallocated with metadata: the clusters it maps to holes of its file count as never written (no state\'s bytes), and the file\'s size on disk is what the file system says', async ({ expect }) => {
    const C = 64 * KiB;
    const image = folder.file('preallocated.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C},preallocation=metadata`, image, String(64 * MiB)]);
    await qemuIo(image, [`write -P 1 0 ${2 * C}`, `write -P 2 ${32 * MiB} ${C}`]);
    const usage = readUsage(image);
    // Every guest cluster is mapped (1,024 of them), three were written.
    expect(usage.allocatedBytes - usage.metadataBytes).toBe(64 * MiB);
    expect(usage.unwrittenBytes).toBe(64 * MiB - 3 * C);
    expect(usage.bytesOnDisk).toBe(fs.statSync(image).blocks * 512);
    expect(usage.bytesOnDisk).toBeLessThan(4 * MiB);
    // The state's own bytes are what it holds on disk: its one L2 table and the three written clusters.
    expect(usage.current).toEqual({ exclusiveBytes: 4 * C, sharedBytes: 0 });
    takeSnapshot(image, 'A');
    const shared = readUsage(image);
    // Shared now: the three written clusters (a shared L2 table is nobody's data); the snapshot owns its L1 copy.
    expect(shared.current).toEqual({ exclusiveBytes: 0, sharedBytes: 3 * C });
    expect(shared.snapshots[0]).toMatchObject({ exclusiveBytes: C, sharedBytes: 3 * C });
    // A disk written cluster by cluster has no such clusters.
    const written = folder.file('written.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, written, String(4 * MiB)]);
    await qemuIo(written, [`write -P 1 0 ${3 * C}`]);
    expect(readUsage(written).unwrittenBytes).toBeUndefined();
  });

  it('reports leaked clusters as qemu-img check counts them', async ({ expect }) => {
    const C = 64 * KiB;
    const image = folder.file('leak.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, image, String(4 * MiB)]);
    await qemuIo(image, [`write -P 1 0 ${3 * C}`]);
    takeSnapshot(image, 'A');
    expect(readUsage(image).leakedBytes).toBe(0);
    // Two clusters given a refcount (and bytes) that nothing points to: a leak, as a crash can leave.
    const opened = Qcow2Image.open(image);
    try {
      const offset = opened.refcounts.allocate(2);
      opened.file.write(new Uint8Array(2 * C), offset);
      opened.flush();
    } finally {
      opened.close();
    }
    const check = await qemuCheck(image);
    expect(check.code).toBe(3);
    expect(check.report?.leaks).toBe(2);
    expect(readUsage(image).leakedBytes).toBe(2 * C);
  });

  it('counts what header extensions hold (a LUKS area, persistent bitmaps) as metadata, not leaked, as qemu-img check does', async ({ expect }) => {
    const luks = folder.file('luks-usage.qcow2');
    const secret = ['--object', 'secret,id=s,data=moo-cow-pass'];
    await qemuImgTimingPbkdf2(['create', '-q', '-f', 'qcow2', ...secret, '-o', 'encrypt.format=luks,encrypt.key-secret=s,encrypt.iter-time=10', luks, '16M']);
    const bitmaps = folder.file('bitmaps-usage.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', bitmaps, '16M']);
    await qemuImg(['bitmap', '--add', bitmaps, 'b0']);
    await qemuIo(bitmaps, ['write -P 1 0 1M']);
    await qemuImg(['bitmap', '--add', bitmaps, 'b1']);
    // qemu-img check finds no leak in either (it exits non-zero on one).
    await qemuImg(['check', ...secret, '--image-opts', `driver=qcow2,file.filename=${luks},encrypt.key-secret=s`]);
    expect((await qemuCheck(bitmaps)).code).toBe(0);
    for (const image of [luks, bitmaps]) {
      const usage = readUsage(image);
      expect(usage.leakedBytes, image).toBe(0);
      // Nothing unaccounted for: every allocated cluster is data or metadata.
      expect(usage.metadataBytes, image).toBeGreaterThan(image === luks ? 1 * MiB : 64 * KiB);
    }
  });
});

/**
 * `work` leaves the image clean and drops its allocated clusters by `bytes`, plus `metadataBytes`
 * the usage figures leave out on purpose (a snapshot table that goes away with its last entry).
 */
async function expectFrees(expect: ExpectStatic, image: string, bytes: number, clusterBytes: number, work: () => unknown, metadataBytes = 0): Promise<void> {
  await expectCheckClean(expect, image, 'before');
  const before = allocatedClusters(image);
  await work();
  await expectCheckClean(expect, image, 'after');
  expect((before - allocatedClusters(image)) * clusterBytes, 'bytes freed').toBe(bytes + metadataBytes);
}

/**
 * The data host clusters an image holds: allocated clusters less metadata (header, refcount
 * table and blocks, L1 and L2 tables, snapshot table).
 */
function dataClusters(image: string, usage: UsageReport, clusterBytes: number): number {
  return allocatedClusters(image) - usage.metadataBytes / clusterBytes;
}

// Was: compressed entries counted their compressed lengths (overlapping where entries share a
// sector: 9× the file) and were "shared" when two L2 tables of one state touched a host cluster.
describe('compressed data: whole host clusters, each counted once per state', { timeout: 60_000 }, () => {
  it.for([
    ['4 KiB clusters, 16 L2 tables, many entries per host cluster', 'cluster_size=4096', 4 * KiB, 16, 32 * MiB],
    ['2 MiB clusters, one run of entries in a host cluster or two', 'cluster_size=2097152', 2 * MiB, 1, 16 * MiB],
    ['refcount_bits=1: every entry in a host cluster of its own', 'refcount_bits=1', 64 * KiB, 1, 32 * MiB],
  ] as const)('%s: with no snapshot the current state owns every data host cluster and its tables, and shares nothing', async ([, options, C, tables, bytes], { expect }) => {
    const plain = folder.file(`compressed-src-${C}.qcow2`);
    const image = folder.file(`compressed-${C}-${tables}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', plain, String(64 * MiB)]);
    await qemuIo(plain, [`write -P 5 0 ${bytes}`]);
    await qemuImg(['convert', '-q', '-c', '-O', 'qcow2', '-o', options, plain, image]);
    await expectCheckClean(expect, image, 'as qemu-img made it');
    const usage = readUsage(image);
    const data = dataClusters(image, usage, C);
    expect(data).toBeGreaterThan(0);
    expect(usage.current).toEqual({ exclusiveBytes: (data + tables) * C, sharedBytes: 0 });
  });

  it('snapshots holding compressed data: each owns what only its entries reference, and deleting one frees exactly that', async ({ expect }) => {
    const C = 4 * KiB;
    const image = folder.file('compressed-snapshots.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, image, String(64 * MiB)]);
    await qemuIo(image, ['write -c -P 5 0 4M']);
    takeSnapshot(image, 'A');
    // QEMU compresses only into unallocated clusters: the next 4 MiB, which only B will name.
    await qemuIo(image, ['write -c -P 6 4M 4M']);
    takeSnapshot(image, 'B');
    await qemuIo(image, ['write -P 7 0 8M']);
    const usage = readUsage(image);
    // The current state rewrote all 8 MiB in plain clusters, under 4 tables of its own.
    expect(usage.current).toEqual({ exclusiveBytes: (2048 + 4) * C, sharedBytes: 0 });
    const a = snapshotUsage(usage, 'A');
    const b = snapshotUsage(usage, 'B');
    // A's data is all B's too: A owns its L1 table alone, and shares the host clusters of its 4 MiB.
    expect(a.exclusiveBytes).toBe(C);
    expect(a.sharedBytes).toBeGreaterThan(0);
    expect(a.sharedBytes).toBeLessThan(4 * MiB);
    expect(b.sharedBytes).toBeGreaterThanOrEqual(a.sharedBytes);
    // What each frees, on its own copy (two snapshots: the snapshot table is rewritten, not freed).
    for (const [name, own] of [['A', a.exclusiveBytes], ['B', b.exclusiveBytes]] as const) {
      const copy = folder.file(`compressed-snapshots-${name}.qcow2`);
      fs.copyFileSync(image, copy);
      await expectFrees(expect, copy, own, C, () => qemuImg(['snapshot', '-d', name, copy]));
    }
  });
});

// Was: an image left dirty (lazy refcounts, the VM killed) gave figures from stale refcounts with no word of it.
describe('an image not closed cleanly', { timeout: 60_000 }, () => {
  it('says its figures may be stale; once repaired, they are right and the flag is gone', async ({ expect }) => {
    const image = folder.file('dirty.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'lazy_refcounts=on', image, String(32 * MiB)]);
    // qemu-io's abort leaves the dirty bit set and the refcounts unwritten.
    await qemuIo(image, ['write -P 7 0 1M', 'flush', 'abort']).catch(() => '');
    expect(readUsage(image).staleRefcounts).toBe(true);
    await qemuImg(['check', '-q', '-r', 'all', image], { okCodes: [0, 1, 2, 3] });
    const repaired = readUsage(image);
    expect(repaired.staleRefcounts).toBeUndefined();
    expect(repaired.current.exclusiveBytes, 'its data and its L2 table').toBe(1 * MiB + 64 * KiB);
  });
});
