/**
 * Property: whatever history an image has — guest writes, zero writes, discards and compressed
 * writes by qemu-io, snapshots taken, applied, deleted and renamed by qemu-img and by Cowbell, in
 * any order, on v2 and v3 images of any cluster size and refcount width, with extended L2 or a raw
 * or qcow2 backing file — a rewrite (compress, keep or uncompress; zlib or zstd; in place or into
 * another folder; in small batches or large) gives an image that `qemu-img check` finds clean, that
 * lists the same snapshots (ids, names, dates, VM clock, sizes), holds in every state what a plain
 * model of the guest says, shows the same snapshot tree in Cowbell, is no larger than the preview
 * promised, and compresses what it was asked to. Seeded: COWBELL_FC_SEED replays a failure,
 * COWBELL_FC_RUNS runs a longer campaign.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { previewRewrite, rewriteImage, type CompressionPolicy } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { changeSnapshotName, readSnapshotTree, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import type { SnapshotTree } from '../../../src/shared/qcow2/model.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { propertySettings } from '../../helpers/property-cases.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, qemuMap, rawOf, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';
import { expectCheckClean, expectSameSnapshots } from '../../helpers/snapshot-scenario.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261203, 12);
const KiB = 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

type Tool = 'cowbell' | 'qemu';
type Step =
  | { kind: 'write'; offset: number; length: number; pattern: number }
  | { kind: 'zero'; sector: number; sectors: number }
  /** Whole clusters: qemu ignores a discard of part of one. */
  | { kind: 'discard'; cluster: number; clusters: number }
  /** One cluster, compressed (`write -c`): qemu refuses where the cluster is allocated already. */
  | { kind: 'compressed'; cluster: number; pattern: number }
  | { kind: 'take'; tool: Tool }
  | { kind: 'apply'; tool: Tool; pick: number }
  | { kind: 'delete'; tool: Tool; pick: number }
  | { kind: 'rename'; pick: number };

interface RewriteCase {
  version: 2 | 3;
  clusterBytes: number;
  refcountBits: number;
  extendedL2: boolean;
  zstdSource: boolean;
  backing: 'none' | 'raw' | 'qcow2';
  /** How the image starts: qemu-img create (optionally preallocated), or qemu-img convert -c from raw patterns. */
  start: 'create' | 'preallocated' | 'convert -c';
  clusters: number;
  steps: Step[];
  policy: CompressionPolicy;
  compressionType: 'source' | 'zlib' | 'zstd';
  /** A version 2 image upgraded to version 3 on the way (RewriteRequest.version). */
  upgrade: boolean;
  where: 'in place' | 'same folder' | 'other folder';
  batchClusters: number | undefined;
  threads: 1 | 2;
}

const tool = fc.constantFrom<Tool>('cowbell', 'qemu');
const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), offset: fc.nat(), length: fc.integer({ min: 1, max: 80 * KiB }), pattern: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('zero' as const), sector: fc.nat(), sectors: fc.integer({ min: 1, max: 160 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('discard' as const), cluster: fc.nat(), clusters: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('compressed' as const), cluster: fc.nat(), pattern: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('take' as const), tool }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('apply' as const), tool, pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), tool, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), pick: fc.nat() }) },
);

const caseArbitrary: fc.Arbitrary<RewriteCase> = fc
  .record({
    version: fc.constantFrom<2 | 3>(2, 3, 3),
    clusterBytes: fc.constantFrom(512, 4 * KiB, 16 * KiB, 64 * KiB),
    refcountBits: fc.constantFrom(1, 2, 4, 8, 16, 16, 64),
    extendedL2: fc.boolean(),
    zstdSource: fc.boolean(),
    backing: fc.constantFrom<RewriteCase['backing']>('none', 'none', 'raw', 'qcow2'),
    start: fc.constantFrom<RewriteCase['start']>('create', 'create', 'preallocated', 'convert -c'),
    clusters: fc.integer({ min: 24, max: 160 }),
    steps: fc.array(stepArbitrary, { minLength: 2, maxLength: 22 }),
    policy: fc.constantFrom<CompressionPolicy>('compress', 'keep', 'uncompress'),
    compressionType: fc.constantFrom<RewriteCase['compressionType']>('source', 'zlib', 'zstd'),
    upgrade: fc.boolean(),
    where: fc.constantFrom<RewriteCase['where']>('in place', 'same folder', 'other folder'),
    batchClusters: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
    threads: fc.constantFrom<1 | 2>(1, 1, 2),
  })
  .map((raw) => {
    const v3 = raw.version === 3;
    const extendedL2 = raw.extendedL2 && v3 && raw.clusterBytes >= 16 * KiB;
    // Compressed clusters pack many to a host cluster, each adding to its refcount: narrow refcounts
    // would overflow when a snapshot shares them (qemu refuses those snapshots), so they come only with 16 bits or more.
    const refcountBits = v3 ? raw.refcountBits : 16;
    const compressing = refcountBits >= 16;
    const upgrade = raw.upgrade && !v3;
    const start = raw.start === 'preallocated' && raw.backing !== 'none' ? 'create' : raw.start === 'convert -c' && (!compressing || raw.backing !== 'none') ? 'create' : raw.start;
    return {
      ...raw,
      extendedL2,
      refcountBits,
      zstdSource: raw.zstdSource && v3,
      start,
      steps: compressing ? raw.steps : raw.steps.filter((step) => step.kind !== 'compressed'),
      compressionType: v3 || upgrade ? raw.compressionType : raw.compressionType === 'zstd' ? 'zlib' : raw.compressionType,
      upgrade,
    };
  });

/**
 * How many snapshots an image may hold at once: each adds a reference to every cluster the states
 * share, and an apply raises the snapshot's references before it lowers the current state's, so
 * one more must fit (2-bit refcounts, at most 3: two states and the apply's).
 */
function snapshotCap(refcountBits: number): number {
  return Math.max(0, Math.min(8, 2 ** refcountBits - 3));
}

let runIndex = 0;

async function checkCase(testCase: RewriteCase): Promise<void> {
  const run = ++runIndex;
  const runFolder = folder.file(`run-${run}`);
  fs.mkdirSync(path.join(runFolder, 'other'), { recursive: true });
  const image = path.join(runFolder, 'disk.qcow2');
  const { clusterBytes, version } = testCase;
  const diskBytes = testCase.clusters * clusterBytes;
  const context = `run ${run}: ${JSON.stringify(testCase)}`;
  const random = new SeededRandom(run * 7919 + testCase.clusters);

  // The starting image and what its guest reads.
  const options = [`cluster_size=${clusterBytes}`, `compat=${version === 3 ? '1.1' : '0.10'}`];
  if (version === 3) options.push(`refcount_bits=${testCase.refcountBits}`, `extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`, `compression_type=${testCase.zstdSource ? 'zstd' : 'zlib'}`);
  const base = new Uint8Array(diskBytes);
  if (testCase.backing !== 'none') {
    const backingName = `base.${testCase.backing}`;
    const backingPath = path.join(runFolder, backingName);
    // Patterned 4 KiB runs, some left as zeros: the overlay's holes show them.
    for (let offset = 0; offset < diskBytes; offset += 4 * KiB) if (random.next() < 0.6) base.fill(random.int(1, 256), offset, Math.min(diskBytes, offset + 4 * KiB));
    const rawBacking = testCase.backing === 'raw' ? backingPath : path.join(runFolder, 'base-source.raw');
    fs.writeFileSync(rawBacking, base);
    if (testCase.backing === 'qcow2') await qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', rawBacking, backingPath]);
    options.push(`backing_file=${backingName}`, `backing_fmt=${testCase.backing}`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options.join(','), image, String(diskBytes)]);
  } else if (testCase.start === 'convert -c') {
    for (let offset = 0; offset < diskBytes; offset += clusterBytes) if (random.next() < 0.5) base.fill(random.int(1, 256), offset, offset + clusterBytes);
    const rawSource = path.join(runFolder, 'start.raw');
    fs.writeFileSync(rawSource, base);
    await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', options.join(','), rawSource, image]);
  } else {
    if (testCase.start === 'preallocated') options.push('preallocation=metadata');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options.join(','), image, String(diskBytes)]);
  }
  let current = base.slice();

  // The history, against the model.
  const snapshots = new Map<string, Uint8Array>();
  let named = 0;
  const pick = (index: number): string | undefined => [...snapshots.keys()][index % Math.max(1, snapshots.size)];
  // Guest writes, zero writes and discards in a row go to one qemu-io run.
  let pendingIo: string[] = [];
  const flushIo = async (): Promise<void> => {
    if (pendingIo.length > 0) await qemuIo(image, pendingIo);
    pendingIo = [];
  };
  for (const step of testCase.steps) {
    if (step.kind !== 'write' && step.kind !== 'zero' && step.kind !== 'discard') await flushIo();
    if (step.kind === 'write') {
      const offset = step.offset % diskBytes;
      const length = Math.min(step.length, diskBytes - offset);
      pendingIo.push(`write -P ${step.pattern} ${offset} ${length}`);
      current.fill(step.pattern, offset, offset + length);
    } else if (step.kind === 'zero') {
      const offset = (step.sector * 512) % diskBytes;
      const length = Math.min(step.sectors * 512, diskBytes - offset);
      pendingIo.push(`write -z ${offset} ${length}`);
      current.fill(0, offset, offset + length);
    } else if (step.kind === 'discard') {
      const start = (step.cluster % testCase.clusters) * clusterBytes;
      const length = Math.min(step.clusters * clusterBytes, diskBytes - start);
      pendingIo.push(`discard ${start} ${length}`);
      // v3 marks discarded clusters zero; v2 has no zero flag, and over a backing file qemu 7.2 leaves them as they are.
      if (version === 3 || testCase.backing === 'none') current.fill(0, start, start + length);
    } else if (step.kind === 'compressed') {
      const start = (step.cluster % testCase.clusters) * clusterBytes;
      const result = await runTool('qemu-io', ['-f', 'qcow2', '-c', `write -c -P ${step.pattern} ${start} ${clusterBytes}`, image], { okCodes: [0, 1] });
      const output = result.stdout + result.stderr;
      if (/^wrote /m.test(output)) current.fill(step.pattern, start, start + clusterBytes);
      else expect(output, `${context}: qemu-io write -c`).toMatch(/write failed/);
    } else if (step.kind === 'take') {
      if (snapshots.size >= snapshotCap(testCase.refcountBits)) continue;
      const name = `s${++named}`;
      if (step.tool === 'cowbell') takeSnapshot(image, name);
      else await qemuImg(['snapshot', '-c', name, image]);
      snapshots.set(name, current.slice());
    } else if (step.kind === 'apply') {
      const name = pick(step.pick);
      if (name === undefined) continue;
      if (step.tool === 'cowbell') revertToSnapshot(image, name);
      else await qemuImg(['snapshot', '-a', name, image]);
      current = (snapshots.get(name) ?? current).slice();
    } else if (step.kind === 'delete') {
      const name = pick(step.pick);
      if (name === undefined) continue;
      if (step.tool === 'cowbell') removeSnapshot(image, name);
      else await qemuImg(['snapshot', '-d', name, image]);
      snapshots.delete(name);
    } else {
      const name = pick(step.pick);
      if (name === undefined) continue;
      const newName = `r${++named}`;
      changeSnapshotName(image, name, newName);
      snapshots.set(newName, snapshots.get(name) ?? current);
      snapshots.delete(name);
    }
  }
  await flushIo();
  // The history itself must be sound, or a failure below would blame the rewrite for it.
  await expectCheckClean(expect, image, `${context}: the source`);
  const original = path.join(runFolder, 'original.qcow2');
  fs.copyFileSync(image, original);

  // What must survive the rewrite, taken before it.
  const listingBefore = (await qemuInfo(image)).snapshots ?? [];
  const textBefore = (await qemuImg(['snapshot', '-l', image])).stdout;
  const treeBefore = readSnapshotTree(image);
  const checkBefore = await qemuCheck(image);
  const ownData = (await qemuMap(image)).filter((entry) => entry.depth === 0 && entry.data).some((entry) => current.subarray(entry.start, entry.start + entry.length).some((byte) => byte !== 0));
  const compressionType = testCase.compressionType === 'source' ? undefined : testCase.compressionType === 'zstd' ? 1 : 0;
  const upgradeTo = testCase.upgrade ? 3 : undefined;
  const preview = previewRewrite({ source: image, compression: testCase.policy, compressionType, version: upgradeTo, batchClusters: testCase.batchClusters });
  const sourceHash = fileHash(image);

  const target = testCase.where === 'in place' ? undefined : path.join(runFolder, ...(testCase.where === 'other folder' ? ['other'] : []), 'out.qcow2');
  // Cases on two threads also compare early, on a helper, however little data the disk holds (waited for however long it takes to start).
  const early = testCase.threads === 2 ? { earlyVerifyFromBytes: 0, earlyVerifyStartMs: 60_000, compressStartMs: 60_000 } : {};
  const result = rewriteImage({ source: image, target, compression: testCase.policy, compressionType, version: upgradeTo, batchClusters: testCase.batchClusters, compressionThreads: testCase.threads, ...early });
  expect(result.upgradedToVersion3, `${context}: upgraded`).toBe(testCase.upgrade);
  const output = target ?? image;
  if (target !== undefined) expect(fileHash(image), `${context}: the source is untouched`).toBe(sourceHash);
  expect(fs.readdirSync(path.dirname(output)).filter((file) => file.endsWith('.tmp')), `${context}: temporary files left`).toEqual([]);

  // Clean, the same snapshots, the same data in every state.
  await expectCheckClean(expect, output, context);
  expect((await qemuInfo(output)).snapshots ?? [], `${context}: qemu-img info's snapshots`).toEqual(listingBefore);
  expect((await qemuImg(['snapshot', '-l', output])).stdout, `${context}: qemu-img snapshot -l`).toBe(textBefore);
  await expectSameSnapshots(expect, output, context);
  for (const [name, bytes] of [[undefined, current] as const, ...snapshots]) {
    const at = firstDifference(await rawOf(output, { snapshot: name }), bytes);
    // Where the copy is wrong, say whether the original was already (the model's fault, not the rewrite's).
    const originalAt = at === -1 ? -1 : firstDifference(await rawOf(original, { snapshot: name }), bytes);
    expect(at, `${context}: first wrong byte of ${name === undefined ? 'the current state' : `snapshot ${name}`} (in the original: ${originalAt})`).toBe(-1);
  }
  expect(treeShape(readSnapshotTree(output)), `${context}: Cowbell's snapshot tree`).toEqual(treeShape(treeBefore));

  // What was asked for, and what was promised.
  const size = fs.statSync(output).size;
  expect(result.afterBytes, `${context}: afterBytes`).toBe(size);
  expect(size, `${context}: the file against the preview's bound`).toBeLessThanOrEqual(preview.maxBytes);
  expect(result.snapshots).toBe(snapshots.size);
  const info = await qemuInfo(output);
  expect(info['format-specific']?.data.compat, `${context}: compat`).toBe(version === 3 || testCase.upgrade ? '1.1' : '0.10');
  if (version === 3 || testCase.upgrade) expect(info['format-specific']?.data['compression-type'], `${context}: compression type`).toBe(testCase.compressionType === 'source' ? (testCase.zstdSource ? 'zstd' : 'zlib') : testCase.compressionType);
  const compressedAfter = (await qemuCheck(output)).report?.['compressed-clusters'] ?? 0;
  if (testCase.policy === 'uncompress') {
    expect(result.compressedClusters, `${context}: compressed clusters written`).toBe(0);
    expect(compressedAfter, `${context}: compressed clusters (qemu-img check)`).toBe(0);
  } else if (testCase.policy === 'compress') {
    // Every cluster here is a repeated byte: it compresses. (With extended L2, a partly allocated
    // cluster that shows the backing file, or whose states disagree on its subclusters, is copied
    // bit for bit, so nothing is promised there: rewrite.subclusters.test.ts.)
    if (ownData && !testCase.extendedL2) expect(compressedAfter, `${context}: compressed clusters (qemu-img check)`).toBeGreaterThan(0);
    if (!testCase.extendedL2) expect(result.storedClusters, `${context}: clusters left uncompressed`).toBe(0);
  } else if (compressionType === undefined && clusterBytes > 512) {
    // (512-byte clusters: see test/cli/rewrite.test.ts, compact "does not grow a disk qemu-img compressed".)
    expect(compressedAfter, `${context}: compressed clusters kept (qemu-img check)`).toBe(checkBefore.report?.['compressed-clusters'] ?? 0);
  }

  // QEMU goes on writing the copy as any image of its own.
  await qemuIo(output, [`write -P 0xee 0 ${Math.min(diskBytes, 8 * KiB)}`]);
  await expectCheckClean(expect, output, `${context}: after a write by qemu-io`);
  fs.rmSync(runFolder, { recursive: true, force: true });
}

/** The tree as the user sees it: who is whose parent, whether inferred, and where "you are here" hangs. */
function treeShape(tree: SnapshotTree): unknown {
  return {
    snapshots: tree.snapshots.map((node) => ({ id: node.id, name: node.name, parentId: node.parentId, parentInferred: node.parentInferred })),
    currentParentId: tree.currentParentId,
    currentParentInferred: tree.currentParentInferred,
  };
}

describe('rewrite, the preview', () => {
  it('its maxBytes bounds the new file also where compressed and stored clusters alternate (found by the property, seed 4)', async () => {
    const image = folder.file('alternating.qcow2');
    const raw = folder.file('alternating.raw');
    fs.writeFileSync(raw, compressibleBytes(2 * 1024 * KiB, 11));
    await qemuImg(['convert', '-q', '-c', '-f', 'raw', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, image]);
    // Every other cluster stored, written over by qemu-io: compressed, stored, compressed, …
    await qemuIo(image, Array.from({ length: 256 }, (_, index) => `write -P ${(index % 250) + 1} ${index * 8 * KiB} 4k`));
    for (const policy of ['keep', 'compress'] as const) {
      for (const batchClusters of [2, undefined]) {
        const preview = previewRewrite({ source: image, compression: policy, batchClusters });
        const output = folder.file(`alternating-${policy}-${batchClusters ?? 'default'}.qcow2`);
        const result = rewriteImage({ source: image, target: output, compression: policy, batchClusters });
        expect(result.afterBytes, `${policy}, batches of ${batchClusters ?? 'the default'}: the file against the preview's bound`).toBeLessThanOrEqual(preview.maxBytes);
      }
    }
  });
});

describe('rewrite, property', () => {
  it(`any history, any rewrite: clean, the same snapshots and tree, every state as the model says (${RUNS} runs, seed ${SEED})`, { timeout: 900_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
