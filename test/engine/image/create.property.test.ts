/**
 * Property: an image Cowbell creates is, to QEMU, the image qemu-img creates with the same
 * options: qemu-img check finds it clean with the same layout numbers, qemu-img info and map
 * print the same JSON for both (but the file name), and qemu-io reads zeros or the backing data.
 * Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { qemuCheck, qemuImg, qemuIo, qemuMap, tempDir, type QemuCheckReport, type TempDir } from '../../helpers/qemu.ts';
import { propertySettings, removeRunFiles } from '../../helpers/property-cases.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261130, 15);
const KiB = 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface CreateCase {
  sizeSectors: number;
  clusterBytes: number;
  compat: '0.10' | '1.1';
  refcountBits: number;
  extendedL2: boolean;
  preallocation: 'off' | 'metadata';
  compressionType: 'zlib' | 'zstd';
  backing: 'none' | 'qcow2' | 'raw';
}

const caseArbitrary: fc.Arbitrary<CreateCase> = fc
  .record({
    sizeSectors: fc.integer({ min: 1, max: 2 * 1024 * 1024 }),
    clusterBytes: fc.constantFrom(512, 4 * KiB, 64 * KiB, 2048 * KiB),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
    refcountBits: fc.constantFrom(1, 2, 4, 8, 16, 32, 64),
    extendedL2: fc.boolean(),
    preallocation: fc.constantFrom<'off' | 'metadata'>('off', 'off', 'metadata'),
    compressionType: fc.constantFrom<'zlib' | 'zstd'>('zlib', 'zstd'),
    backing: fc.constantFrom<CreateCase['backing']>('none', 'qcow2', 'raw'),
  })
  .map((raw) => {
    const v2 = raw.compat === '0.10';
    return {
      ...raw,
      refcountBits: v2 ? 16 : raw.refcountBits,
      extendedL2: !v2 && raw.extendedL2 && raw.clusterBytes >= 16 * KiB,
      compressionType: v2 ? ('zlib' as const) : raw.compressionType,
      // qemu-img refuses metadata preallocation over a backing file.
      preallocation: raw.backing === 'none' ? raw.preallocation : ('off' as const),
    };
  });

let runIndex = 0;

function withoutName(info: Record<string, unknown>): Record<string, unknown> {
  const { filename: _filename, 'actual-size': _actual, ...rest } = info;
  return rest;
}

async function checkCase(testCase: CreateCase): Promise<void> {
  runIndex += 1;
  const context = JSON.stringify(testCase);
  const name = (suffix: string): string => folder.file(`run-${runIndex}-${suffix}`);
  const size = testCase.sizeSectors * 512;
  let backingFile: string | undefined;
  if (testCase.backing !== 'none') {
    backingFile = `run-${runIndex}-base.${testCase.backing}`;
    await qemuImg(['create', '-q', '-f', testCase.backing, folder.file(backingFile), String(size)]);
    await qemuIo(folder.file(backingFile), [`write -P 9 0 ${Math.min(size, 64 * KiB)}`], { format: testCase.backing });
  }
  const ours = name('cowbell.qcow2');
  const theirs = name('qemu.qcow2');
  createImage({
    path: ours,
    size,
    clusterSize: testCase.clusterBytes,
    compat: testCase.compat,
    refcountBits: testCase.refcountBits,
    extendedL2: testCase.extendedL2,
    preallocation: testCase.preallocation,
    compressionType: testCase.compressionType,
    ...(backingFile !== undefined ? { backingFile, backingFormat: testCase.backing === 'raw' ? ('raw' as const) : ('qcow2' as const) } : {}),
  });
  const options = [
    `cluster_size=${testCase.clusterBytes}`,
    `compat=${testCase.compat}`,
    `refcount_bits=${testCase.refcountBits}`,
    `extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`,
    `preallocation=${testCase.preallocation}`,
    ...(testCase.compat === '1.1' ? [`compression_type=${testCase.compressionType}`] : []),
  ].join(',');
  const backingArgs = backingFile !== undefined ? ['-b', backingFile, '-F', testCase.backing] : [];
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...backingArgs, theirs, String(size)]);

  const [ourCheck, theirCheck] = [await qemuCheck(ours), await qemuCheck(theirs)];
  expect(ourCheck.code, `${context}\n${ourCheck.output}`).toBe(0);
  // Metadata preallocation may place a refcount block among the data clusters where QEMU places it
  // ahead of them: one more fragment, the same clusters and file end.
  const fragments = (report: QemuCheckReport): number | undefined => (testCase.preallocation === 'metadata' ? undefined : report['fragmented-clusters']);
  const numbers = (report: QemuCheckReport): unknown[] => [report['allocated-clusters'], report['total-clusters'], report['image-end-offset'], fragments(report)];
  expect(numbers(ourCheck.report as QemuCheckReport), context).toEqual(numbers(theirCheck.report as QemuCheckReport));
  const info = async (file: string): Promise<Record<string, unknown>> => withoutName(JSON.parse((await qemuImg(['info', '--output=json', file])).stdout) as Record<string, unknown>);
  const [ourInfo, theirInfo] = [await info(ours), await info(theirs)];
  expect({ ...ourInfo, 'full-backing-filename': undefined }, context).toEqual({ ...theirInfo, 'full-backing-filename': undefined });
  // With metadata preallocation, qemu-img map's zero flag follows which host blocks happen to be
  // allocated on disk (QEMU's own file has a zero block written where Cowbell leaves a hole), and a
  // refcount block may sit among the data clusters where QEMU puts it ahead of them: compare which
  // guest ranges are preallocated, not where.
  const mapOf = async (file: string): Promise<unknown[]> => {
    const entries = await qemuMap(file);
    if (testCase.preallocation !== 'metadata') return entries;
    const merged: { start: number; length: number; data: boolean; depth: number }[] = [];
    for (const { start, length, data, depth } of entries) {
      const last = merged.at(-1);
      if (last !== undefined && last.data === data && last.depth === depth) last.length += length;
      else merged.push({ start, length, data, depth });
    }
    return merged;
  };
  expect(await mapOf(ours), context).toEqual(await mapOf(theirs));
  removeRunFiles(folder, `run-${runIndex}-`);
}

describe('create, property', () => {
  it(`makes the image qemu-img makes with the same options, as QEMU sees it (${RUNS} runs, seed ${SEED})`, { timeout: 300_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
