/**
 * Property: Cowbell's `info --output=json` of any image qemu made is qemu-img's, key for key and
 * value for value: images of every cluster size and refcount width, with extended L2 or not,
 * compat 0.10 or 1.1, over a backing file or not, written, snapshotted (qemu-img snapshot -c)
 * and written again. Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { propertySettings, removeRunFiles } from '../../helpers/property-cases.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261127, 15);
const KiB = 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface InfoCase {
  diskKiB: number;
  clusterBytes: number;
  refcountBits: number;
  extendedL2: boolean;
  compat: '0.10' | '1.1';
  backing: 'none' | 'qcow2' | 'raw';
  /** Each batch of writes is followed by a snapshot, except the last. */
  batches: { offsetKiB: number; lengthKiB: number; zero: boolean }[][];
  snapshotNames: string[];
}

const caseArbitrary: fc.Arbitrary<InfoCase> = fc
  .record({
    diskKiB: fc.integer({ min: 1, max: 4096 }),
    clusterBytes: fc.constantFrom(512, 4 * KiB, 64 * KiB, 2048 * KiB),
    refcountBits: fc.constantFrom(1, 8, 16, 64),
    extendedL2: fc.boolean(),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
    backing: fc.constantFrom<InfoCase['backing']>('none', 'qcow2', 'raw'),
    batches: fc.array(fc.array(fc.record({ offsetKiB: fc.nat(4095), lengthKiB: fc.integer({ min: 1, max: 256 }), zero: fc.boolean() }), { maxLength: 3 }), { minLength: 1, maxLength: 4 }),
    snapshotNames: fc.array(fc.stringMatching(/^[a-z][a-z0-9 _-]{0,15}$/), { minLength: 3, maxLength: 3 }),
  })
  .map((raw) => ({
    ...raw,
    // 1-bit refcounts cannot count a cluster a snapshot shares: qemu-img refuses the snapshot (EINVAL).
    refcountBits: raw.compat === '0.10' ? 16 : raw.refcountBits === 1 && raw.batches.length > 1 ? 2 : raw.refcountBits,
    extendedL2: raw.extendedL2 && raw.compat === '1.1' && raw.clusterBytes >= 16 * KiB,
  }));

let runIndex = 0;

async function checkCase(testCase: InfoCase): Promise<void> {
  runIndex += 1;
  const name = (suffix: string): string => folder.file(`run-${runIndex}-${suffix}`);
  const size = String(testCase.diskKiB * KiB);
  const backingArgs: string[] = [];
  if (testCase.backing !== 'none') {
    const base = name(`base.${testCase.backing}`);
    await qemuImg(['create', '-q', '-f', testCase.backing, base, size]);
    backingArgs.push('-b', base, '-F', testCase.backing);
  }
  const image = name('image.qcow2');
  const options = `cluster_size=${testCase.clusterBytes},compat=${testCase.compat},refcount_bits=${testCase.refcountBits},extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`;
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...backingArgs, image, size]);
  for (const [index, batch] of testCase.batches.entries()) {
    const commands = batch
      .map((write) => ({ ...write, offset: Math.min(write.offsetKiB, testCase.diskKiB - 1) * KiB }))
      .map((write) => ({ ...write, length: Math.min(write.lengthKiB * KiB, testCase.diskKiB * KiB - write.offset) }))
      .map((write) => (write.zero ? `write -z ${write.offset} ${write.length}` : `write -P ${index + 1} ${write.offset} ${write.length}`));
    if (commands.length > 0) await qemuIo(image, commands);
    const snapshot = testCase.snapshotNames[index];
    if (index < testCase.batches.length - 1 && snapshot !== undefined) await qemuImg(['snapshot', '-c', `${snapshot}-${index}`, image]);
  }
  const theirs = JSON.parse((await qemuImg(['info', '--output=json', image])).stdout) as Record<string, unknown>;
  const ours = JSON.parse(JSON.stringify(readImageInfo(image))) as Record<string, unknown>;
  expect(ours, JSON.stringify(testCase)).toEqual(theirs);
  removeRunFiles(folder, `run-${runIndex}-`);
}

describe('info, property', () => {
  it(`matches qemu-img info --output=json on any image qemu made (${RUNS} runs, seed ${SEED})`, { timeout: 300_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
