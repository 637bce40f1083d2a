/**
 * Property: Cowbell's check agrees with qemu-img check on images qemu made — clean ones (the same
 * layout numbers) and ones with refcounts changed at random (the same corruption and leak counts
 * and exit code) — and after Cowbell repairs one (-r all), qemu-img check finds it clean and qemu
 * reads the same guest disk and snapshots as before the damage.
 * Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkExitCode, checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { counts, layoutNumbers } from '../../helpers/check-report.ts';
import { getRefcount, layout, setRefcount } from '../../helpers/qcow2-poke.ts';
import { firstDifference, qemuCheck, qemuImg, qemuIo, rawOf, tempDir, type QemuCheckReport, type TempDir } from '../../helpers/qemu.ts';
import { propertySettings, removeRunFiles } from '../../helpers/property-cases.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261129, 15);
const KiB = 1024;
const DISK_BYTES = 1024 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface CheckCase {
  clusterBytes: number;
  refcountBits: number;
  compat: '0.10' | '1.1';
  writes: { offsetKiB: number; lengthKiB: number; pattern: number }[];
  snapshot: boolean;
  compressed: boolean;
  /** Refcounts to change: which host cluster (modulo the file's clusters) and how. */
  damage: { cluster: number; change: 'zero' | 'plus-one' | 'minus-one' | 'two' }[];
}

const caseArbitrary: fc.Arbitrary<CheckCase> = fc
  .record({
    clusterBytes: fc.constantFrom(512, 4 * KiB, 64 * KiB),
    refcountBits: fc.constantFrom(2, 8, 16, 64),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
    writes: fc.array(fc.record({ offsetKiB: fc.nat(1023), lengthKiB: fc.integer({ min: 1, max: 200 }), pattern: fc.integer({ min: 1, max: 255 }) }), { minLength: 1, maxLength: 5 }),
    snapshot: fc.boolean(),
    compressed: fc.boolean(),
    damage: fc.array(fc.record({ cluster: fc.nat(), change: fc.constantFrom<CheckCase['damage'][number]['change']>('zero', 'plus-one', 'minus-one', 'two') }), { maxLength: 3 }),
  })
  // 2-bit refcounts overflow where snapshots share clusters or compressed clusters share a host cluster: qemu-img refuses those.
  .map((raw) => ({ ...raw, refcountBits: raw.compat === '0.10' ? 16 : raw.refcountBits === 2 && (raw.snapshot || raw.compressed) ? 8 : raw.refcountBits }));

let runIndex = 0;

async function checkCase(testCase: CheckCase): Promise<void> {
  runIndex += 1;
  const context = JSON.stringify(testCase);
  const name = (suffix: string): string => folder.file(`run-${runIndex}-${suffix}`);
  const options = `cluster_size=${testCase.clusterBytes},compat=${testCase.compat},refcount_bits=${testCase.refcountBits}`;
  let image = name('image.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, String(DISK_BYTES)]);
  await qemuIo(
    image,
    testCase.writes.map((write) => `write -P ${write.pattern} ${write.offsetKiB * KiB} ${Math.min(write.lengthKiB, 1024 - write.offsetKiB) * KiB}`),
  );
  if (testCase.compressed) {
    const compressed = name('compressed.qcow2');
    await qemuImg(['convert', '-c', '-f', 'qcow2', '-O', 'qcow2', '-o', options, image, compressed]);
    image = compressed;
  }
  if (testCase.snapshot) {
    await qemuImg(['snapshot', '-c', 'before', image]);
    await qemuIo(image, [`write -P 7 0 ${testCase.clusterBytes}`]);
  }
  const clean = await qemuCheck(image);
  expect(clean.code, `${context}\n${clean.output}`).toBe(0);
  const ours = checkImagePath(image);
  expect(counts(ours), context).toEqual({ corruptions: 0, leaks: 0, errors: 0 });
  expect(layoutNumbers(ours), context).toEqual(layoutNumbers(clean.report as QemuCheckReport));

  const guest = await rawOf(image);
  const snapshotGuest = testCase.snapshot ? await rawOf(image, { snapshot: 'before' }) : null;
  const { clusterBytes, fileSize, refcountOrder } = layout(image);
  const maxRefcount = 2 ** 2 ** refcountOrder - 1;
  const fileClusters = Math.ceil(fileSize / clusterBytes);
  for (const damage of testCase.damage) {
    const cluster = damage.cluster % fileClusters;
    const now = getRefcount(image, cluster);
    const next = { zero: 0, 'plus-one': Math.min(maxRefcount, now + 1), 'minus-one': Math.max(0, now - 1), two: Math.min(maxRefcount, 2) }[damage.change];
    setRefcount(image, cluster, next);
  }
  const damaged = await qemuCheck(image);
  const theirs = damaged.report as QemuCheckReport;
  const found = checkImagePath(image);
  expect(counts(found), `${context}\n${damaged.output}`).toEqual(counts(theirs));
  expect(checkExitCode(found), `${context}\n${damaged.output}`).toBe(damaged.code);

  const repaired = checkImagePath(image, { repair: 'all' });
  const after = await qemuCheck(image);
  expect(after.code, `${context}\nafter Cowbell's repair (${JSON.stringify(counts(repaired))}):\n${after.output}`).toBe(0);
  expect(firstDifference(await rawOf(image), guest), `${context}: current state after the repair`).toBe(-1);
  if (snapshotGuest !== null) expect(firstDifference(await rawOf(image, { snapshot: 'before' }), snapshotGuest), `${context}: snapshot after the repair`).toBe(-1);
  removeRunFiles(folder, `run-${runIndex}-`);
}

describe('check, property', () => {
  it(`agrees with qemu-img check before and after random refcount damage, and repairs it (${RUNS} runs, seed ${SEED})`, { timeout: 600_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
