/**
 * `cowbell diff --json IMG A B`: the guest ranges that differ between two states are the clusters
 * written between them (whole clusters, merged into runs, the last one cut at the disk's end);
 * "current" names the current state; identical states give no ranges; and the diff reads only
 * mapping tables, never guest data.
 */
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { runCli } from '../../../src/cli/run.ts';
import { diffStates } from '../../../src/shared/qcow2/snapshots/diff.ts';
import { decodeL2 } from '../../../src/shared/qcow2/format/entries.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image, type L1Table } from '../../../src/shared/qcow2/image/image.ts';
import type { DiffResult } from '../../../src/shared/qcow2/model.ts';
import { takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { ObservedFile } from '../../helpers/observed-file.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const C = 4 * KiB;
/** 4 MiB and one 512-byte sector: 4 L2 tables of 4 KiB clusters, the last cluster cut short. */
const SIZE = 4 * MiB + 512;

interface Write {
  offset: number;
  length: number;
}

/** The cluster-granular runs a set of writes covers, as the diff reports them. */
function clusterRuns(writes: Write[]): DiffResult {
  const clusters = new Set<number>();
  for (const write of writes) {
    for (let cluster = Math.floor(write.offset / C); cluster * C < write.offset + write.length; cluster++) clusters.add(cluster);
  }
  const ranges: { offset: number; length: number }[] = [];
  for (const cluster of [...clusters].sort((a, b) => a - b)) {
    const offset = cluster * C;
    const length = Math.min(C, SIZE - offset);
    const last = ranges.at(-1);
    if (last && last.offset + last.length === offset) last.length += length;
    else ranges.push({ offset, length });
  }
  return { ranges, bytes: ranges.reduce((sum, range) => sum + range.length, 0) };
}

async function write(image: string, writes: Write[], pattern: number): Promise<void> {
  await qemuIo(image, writes.map((entry) => `write -P ${pattern} ${entry.offset} ${entry.length}`));
}

async function cliDiff(expect: ExpectStatic, image: string, from: string, to: string): Promise<DiffResult> {
  let out = '';
  let err = '';
  const code = await runCli(['diff', '--json', image, from, to], { out: (text) => (out += text), err: (text) => (err += text) });
  expect({ code, err }, `cowbell diff ${from} ${to}`).toEqual({ code: 0, err: '' });
  return JSON.parse(out) as DiffResult;
}

/** Host clusters holding guest data in any state of the image. */
function dataClusters(image: Qcow2Image): Set<number> {
  const clusters = new Set<number>();
  const l1s: L1Table[] = [image.l1, ...image.snapshots.map((snapshot) => image.loadSnapshotL1(snapshot))];
  for (const l1 of l1s) {
    for (let l1Index = 0; l1Index < l1.size; l1Index++) {
      const l2Offset = image.l2OffsetAt(l1, l1Index);
      if (l2Offset === 0) continue;
      const table = image.l2Cache.get(l2Offset);
      for (let slot = 0; slot < image.l2Entries; slot++) {
        const entry = decodeL2(table.view, slot * image.l2EntryBytes, image.l2Format);
        if (entry.hostOffset !== 0) clusters.add(Math.floor(entry.hostOffset / image.clusterBytes));
      }
    }
  }
  return clusters;
}

describe('cowbell diff', { timeout: 60_000 }, () => {
  it('gives the clusters written between two states, for snapshots and "current", and nothing for identical states', async ({ expect }) => {
    const image = folder.file('diff.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, image, String(SIZE)]);
    await write(image, [{ offset: 0, length: 64 * KiB }, { offset: 2 * MiB, length: 100 * KiB }], 1);
    takeSnapshot(image, 'A');
    // Between A and B: an unaligned write inside one cluster, one across three clusters of two L2 tables, and the disk's cut-short end.
    const betweenAB: Write[] = [
      { offset: 3 * C + 100, length: 200 },
      { offset: 1 * MiB - C - 10, length: 2 * C },
      { offset: SIZE - 700, length: 700 },
    ];
    await write(image, betweenAB, 2);
    await qemuIo(image, [`write -z ${2 * MiB + 5 * C} ${C}`]);
    betweenAB.push({ offset: 2 * MiB + 5 * C, length: C });
    takeSnapshot(image, 'B');
    await qemuImg(['snapshot', '-c', 'B again', image]);
    const afterB: Write[] = [
      { offset: 3 * C, length: 1 },
      { offset: 3 * MiB, length: 3 * C },
    ];
    await write(image, afterB, 3);

    expect(await cliDiff(expect, image, 'A', 'B')).toEqual(clusterRuns(betweenAB));
    expect(await cliDiff(expect, image, 'B', 'A')).toEqual(clusterRuns(betweenAB));
    expect(await cliDiff(expect, image, 'B', 'current')).toEqual(clusterRuns(afterB));
    expect(await cliDiff(expect, image, 'current', 'A')).toEqual(clusterRuns([...betweenAB, ...afterB]));
    const none = { ranges: [], bytes: 0 };
    expect(await cliDiff(expect, image, 'A', 'A')).toEqual(none);
    expect(await cliDiff(expect, image, 'B', 'B again')).toEqual(none);
    expect(await cliDiff(expect, image, 'current', 'current')).toEqual(none);
    takeSnapshot(image, 'C');
    expect(await cliDiff(expect, image, 'C', 'current')).toEqual(none);
  });

  it('reads only metadata: no read touches a cluster that holds guest data', async ({ expect }) => {
    const image = folder.file('diff-reads.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${C}`, image, String(SIZE)]);
    await write(image, [{ offset: 0, length: 1 * MiB }], 1);
    takeSnapshot(image, 'A');
    await write(image, [{ offset: 512 * KiB, length: 1 * MiB }, { offset: 3 * MiB, length: 64 * KiB }], 2);
    takeSnapshot(image, 'B');
    await write(image, [{ offset: 100 * KiB, length: 8 * KiB }], 3);

    const file = new ObservedFile(NodeBlockFile.open(image, { readOnly: true }), { sync: true, record: true });
    const opened = Qcow2Image.openFile(file, { readOnly: true });
    try {
      const data = dataClusters(opened);
      expect(data.size).toBeGreaterThan(300);
      // Opening reads the header area in one go (which may span anything): only what the diffs read counts.
      file.reads.length = 0;
      const results = [diffStates(opened, 'A', 'B'), diffStates(opened, 'B', 'current'), diffStates(opened, 'A', 'current')];
      expect(results.map((result) => result.bytes).every((bytes) => bytes > 0)).toBe(true);
      expect(file.reads.length).toBeGreaterThan(0);
      const touching = (reads: typeof file.reads): typeof file.reads =>
        reads.filter((read) => {
          for (let cluster = Math.floor(read.position / C); cluster * C < read.position + read.length; cluster++) if (data.has(cluster)) return true;
          return false;
        });
      expect(touching(file.reads), 'reads that touch a data cluster').toEqual([]);
      // The method sees a data read when there is one: a guest read of one cluster.
      file.reads.length = 0;
      opened.read(100 * KiB, C);
      expect(touching(file.reads)).toHaveLength(1);
    } finally {
      opened.close();
    }
  });
});
