/**
 * Compress, compact and convert-with-snapshots across the qcow2 format matrix (compat 0.10/1.1 ×
 * cluster sizes 512 B–2 MiB × refcount widths × extended L2, zlib and zstd), with and without a
 * backing file, with 0, 1 and 20 snapshots made by qemu-img and by Cowbell, judged by the real
 * qemu-img: check clean, the same snapshots listed, every snapshot's data and the current data as
 * before, Cowbell's tree the same, compressed clusters after compress, and no larger a file.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { rewriteImage, type CompressionPolicy, type RewriteResult } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { readSnapshotTree, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import type { SnapshotTree } from '../../../src/shared/qcow2/model.ts';
import { configName, formatMatrix, KiB, MiB, qemuOptions, smallDiskSize, type FormatConfig } from '../../helpers/image-matrix.ts';
import { firstDifference, inBatches, qemuCheck, qemuCompare, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectCheckClean, rawSnapshotEntries } from '../../helpers/snapshot-scenario.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface Case {
  config: FormatConfig;
  snapshots: number;
  backing: 'none' | 'qcow2' | 'raw';
  policies: CompressionPolicy[];
}

/** Every format of the matrix (and zstd), each with a snapshot count and a backing file that rotate so every pairing is met. */
function cases(): Case[] {
  const configs: FormatConfig[] = [...formatMatrix(), { compat: '1.1', clusterSize: 64 * KiB, refcountBits: 16, extendedL2: false, compressionType: 'zstd' }, { compat: '1.1', clusterSize: 64 * KiB, refcountBits: 16, extendedL2: true, compressionType: 'zstd' }];
  const counts = [0, 1, 20] as const;
  const backings = ['none', 'qcow2', 'none', 'raw'] as const;
  // 1-bit refcounts cannot share a cluster: such an image can hold no snapshot. Twenty snapshots of
  // a disk of 2 MiB clusters cost qemu-img half a minute to read back: one is enough there.
  // Each format is rewritten one way (rotating, so every way meets every kind of format); the
  // common 64 KiB format every way.
  const ways: CompressionPolicy[][] = [['compress'], ['keep'], ['compress'], ['uncompress']];
  return configs.map((config, index) => {
    const count = config.refcountBits === 1 ? 0 : (counts[index % 3] ?? 0);
    const common = config.clusterSize === 64 * KiB && config.refcountBits === 16 && !config.extendedL2 && config.compressionType === 'zlib';
    const policies: CompressionPolicy[] = common ? ['compress', 'keep', 'uncompress'] : (ways[index % 4] ?? ['compress']);
    return { config, snapshots: config.clusterSize >= MiB ? Math.min(count, 1) : count, backing: backings[index % 4] ?? 'none', policies };
  });
}

function caseName(testCase: Case): string {
  const backing = testCase.backing === 'none' ? '' : `, over a ${testCase.backing} backing file`;
  return `${testCase.policies.join(', ')}: ${configName(testCase.config)}, ${testCase.snapshots} snapshot${testCase.snapshots === 1 ? '' : 's'}${backing}`;
}

/**
 * A disk with a history: data written by qemu-io (some of it compressed, some zeros), snapshots
 * taken by qemu-img and by Cowbell between writes, one deleted (a hole), one applied.
 */
async function buildSource(testCase: Case, name: string): Promise<string> {
  const { config } = testCase;
  const size = smallDiskSize(config);
  const image = folder.file(`${name}.qcow2`);
  const random = new SeededRandom(config.clusterSize + config.refcountBits * 7 + testCase.snapshots);
  const createArgs = ['create', '-f', 'qcow2', '-o', qemuOptions(config)];
  if (testCase.backing !== 'none') {
    const base = folder.file(`${name}.base.${testCase.backing}`);
    await qemuImg(['create', '-f', testCase.backing, base, String(size)]);
    await qemuIo(base, [`write -P 0x5a 0 ${size}`], { format: testCase.backing });
    createArgs.push('-b', base, '-F', testCase.backing);
  }
  await qemuImg([...createArgs, image, String(size)]);
  const cluster = config.clusterSize;
  const write = async (): Promise<void> => {
    const offset = random.int(0, size - 2 * cluster);
    const length = random.int(1, 2 * cluster);
    await qemuIo(image, [`write -P ${random.int(1, 255)} ${offset} ${length}`, `write -z ${random.int(0, size - cluster)} ${cluster}`]);
  };
  // Guest data first: patterned, incompressible-ish (random bytes can't be made by qemu-io: a
  // pattern per 512 bytes stands in), a compressed cluster, and a cluster of zeros stored as data.
  // (A compressed write needs a cluster nothing was written to yet.)
  const commands = [`write -c -P 0x22 ${cluster * 2} ${cluster}`, `write -P 0x11 0 ${2 * cluster}`, `write -P 0x13 ${3 * cluster} ${cluster}`, `write -P 0 ${cluster * 4} ${cluster}`];
  for (let sector = 0; sector < Math.min(64, size / 512 - 8); sector++) commands.push(`write -P ${(sector * 37) % 251} ${size / 2 + sector * 512 - ((size / 2) % 512)} 512`);
  await qemuIo(image, commands);
  for (let index = 0; index < testCase.snapshots; index++) {
    if (index % 3 === 2) takeSnapshot(image, `cowbell-${index}`);
    else await qemuImg(['snapshot', '-c', `qemu-${index}`, image]);
    await write();
  }
  if (testCase.snapshots >= 20) {
    await qemuImg(['snapshot', '-d', 'qemu-4', image]);
    await qemuImg(['snapshot', '-a', 'qemu-7', image]);
    await write();
  }
  return image;
}

interface SourceFacts {
  snapshots: NonNullable<Awaited<ReturnType<typeof qemuInfo>>['snapshots']>;
  raws: Map<string, Uint8Array>;
  tree: SnapshotTree;
  entries: Map<string, Uint8Array>;
  size: number;
}

async function factsOf(image: string): Promise<SourceFacts> {
  const snapshots = (await qemuInfo(image)).snapshots ?? [];
  const raws = new Map<string, Uint8Array>();
  await inBatches(snapshots.map((snapshot) => async () => raws.set(snapshot.name, await rawOf(image, { snapshot: snapshot.name }))));
  return { snapshots, raws, tree: readSnapshotTree(image), entries: rawSnapshotEntries(image), size: fs.statSync(image).size };
}

/** What the tree says of each state's parent: the part a rewrite must keep (sizes may change). */
function treeShape(tree: SnapshotTree): unknown {
  return { parents: tree.snapshots.map((node) => [node.id, node.parentId, node.parentInferred]), current: tree.currentParentId, inferred: tree.currentParentInferred };
}

async function expectSameStates(source: string, before: SourceFacts, output: string, label: string): Promise<void> {
  await expectCheckClean(expect, output, label);
  const info = await qemuInfo(output);
  expect(info.snapshots ?? [], `${label}: snapshots listed`).toEqual(before.snapshots);
  const compare = await qemuCompare(source, output, { formatB: 'qcow2' });
  expect(compare.code, `${label}: the current state\n${compare.output}`).toBe(0);
  await inBatches(
    before.snapshots.map((snapshot) => async () => {
      const raw = await rawOf(output, { snapshot: snapshot.name });
      const expected = before.raws.get(snapshot.name) ?? new Uint8Array(0);
      expect(firstDifference(raw, expected), `${label}: snapshot ${snapshot.name}'s data`).toBe(-1);
    }),
  );
  expect(treeShape(readSnapshotTree(output)), `${label}: the tree`).toEqual(treeShape(before.tree));
  // Extra data QEMU and Cowbell do not share is kept byte for byte (Cowbell's own record may move its L1 mark).
  const entries = rawSnapshotEntries(output);
  for (const [id, entry] of before.entries) {
    const copy = entries.get(id);
    // Date, VM clock and VM state size; then QEMU's 24 bytes of extra data (VM state size, disk size, icount).
    expect(copy?.subarray(16, 36), `${label}: snapshot ${id}'s fixed fields`).toEqual(entry.subarray(16, 36));
    expect(copy?.subarray(40, 64), `${label}: snapshot ${id}'s extra data`).toEqual(entry.subarray(40, 64));
  }
}

describe('rewrite across the format matrix, judged by qemu-img', () => {
  for (const testCase of cases()) {
    it(caseName(testCase), async () => {
      const name = configName(testCase.config).replaceAll(' ', '-') + `-${testCase.snapshots}-${testCase.backing}`;
      const source = await buildSource(testCase, name);
      const before = await factsOf(source);
      const sourceBytes = fs.readFileSync(source);
      for (const policy of testCase.policies) {
        const output = folder.file(`${name}.${policy}.qcow2`);
        const result: RewriteResult = rewriteImage({ source, target: output, compression: policy, compressionThreads: policy === 'compress' ? 2 : 1 });
        const label = `${policy}`;
        expect(result.snapshots, label).toBe(before.snapshots.length);
        await expectSameStates(source, before, output, label);
        const check = await qemuCheck(output);
        const outputSize = fs.statSync(output).size;
        if (policy === 'compress') {
          expect(check.report?.['compressed-clusters'] ?? 0, `${label}: compressed clusters`).toBeGreaterThan(0);
          expect(outputSize, `${label}: smaller than the source`).toBeLessThan(before.size);
        } else if (policy === 'keep') {
          expect(outputSize, `${label}: no larger than the source`).toBeLessThanOrEqual(before.size);
        } else {
          expect(check.report?.['compressed-clusters'] ?? 0, `${label}: nothing compressed`).toBe(0);
        }
        fs.rmSync(output);
      }
      // The source was only read.
      expect(Buffer.compare(fs.readFileSync(source), sourceBytes), 'the source is unchanged').toBe(0);
    }, 120_000);
  }
});

describe('rewrite in place', () => {
  it('compresses a disk with snapshots where it lies, leaving no temporary file, and qemu reads the same', async () => {
    const config: FormatConfig = { compat: '1.1', clusterSize: 64 * KiB, refcountBits: 16, extendedL2: false, compressionType: 'zlib' };
    const source = await buildSource({ config, snapshots: 20, backing: 'none', policies: ['compress'] }, 'in-place');
    const copy = folder.file('in-place.before.qcow2');
    fs.copyFileSync(source, copy);
    const before = await factsOf(source);
    const result = rewriteImage({ source, compression: 'compress', compressionThreads: 2 });
    expect(result.inPlace).toBe(true);
    expect(result.afterBytes).toBe(fs.statSync(source).size);
    expect(result.afterBytes).toBeLessThan(result.beforeBytes);
    await expectSameStates(copy, before, source, 'in place');
    expect(fs.readdirSync(folder.path).filter((file) => file.includes('.cowbell-'))).toEqual([]);
  }, 120_000);

  it('shares what the states share: twenty snapshots of one 4 MiB disk take little more room than one', async () => {
    const image = folder.file('shared.qcow2');
    const raw = folder.file('shared.raw');
    fs.writeFileSync(raw, new SeededRandom(7).bytes(4 * MiB));
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, image]);
    for (let index = 0; index < 20; index++) await qemuImg(['snapshot', '-c', `s${index}`, image]);
    await qemuIo(image, ['write -P 0x77 0 64k']);
    const result = rewriteImage({ source: image, target: folder.file('shared.out.qcow2'), compression: 'keep' });
    // 4 MiB of data once, one more cluster for the current state's own write, and metadata.
    expect(result.storedClusters).toBe(65);
    expect(result.afterBytes).toBeLessThan(4 * MiB + 2 * MiB);
    const opened = Qcow2Image.open(folder.file('shared.out.qcow2'), { readOnly: true });
    try {
      expect(opened.snapshots).toHaveLength(20);
    } finally {
      opened.close();
    }
  }, 60_000);
});
