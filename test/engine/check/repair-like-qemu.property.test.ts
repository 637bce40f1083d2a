/**
 * Property (issue 21, part 2): random damage of the kinds qemu-img check -r all repairs — no
 * refcount table, a refcount table of zero clusters, a snapshot table past the end of the file,
 * a v2 image botched to v3, an inactive L2 table overwritten by guest data — one or two at a
 * time, on random qemu-made images. After Cowbell's repair qemu-img check finds the image clean,
 * and every guest range qemu-img's own repair of a copy keeps reads the same through Cowbell.
 * Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkExitCode, checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import * as poke from '../../helpers/qcow2-poke.ts';
import { propertySettings, qemuIoCommand, qemuIoOpArbitrary, removeRunFiles, type QemuIoOp } from '../../helpers/property-cases.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { cowbellStates, keptRangeMismatches, qemuStates, referenceStates } from '../../helpers/repair-comparison.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261203, 30);
const KiB = 1024;
const DISK_BYTES = 1024 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const DAMAGE_KINDS = ['no-refcount-table', 'refcount-table-of-zero-clusters', 'snapshot-table-past-end', 'botched-v3', 'inactive-l2-overwritten'] as const;
type DamageKind = (typeof DAMAGE_KINDS)[number];

interface RepairCase {
  clusterBytes: number;
  compat: '0.10' | '1.1';
  /** Guest writes (and zero writes, discards) before each snapshot, and after the last. */
  rounds: QemuIoOp[][];
  damage: DamageKind[];
  /** Extra data bytes each botched snapshot entry keeps (below the 16 v3 requires for some). */
  botchedExtra: number[];
  /** The pattern of the guest write that lands on an inactive L2 table. */
  overwritePattern: number;
}

const caseArbitrary: fc.Arbitrary<RepairCase> = fc.record({
  clusterBytes: fc.constantFrom(512, 4 * KiB, 64 * KiB),
  compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
  // An empty round between two snapshots makes them share every table.
  rounds: fc.array(fc.array(qemuIoOpArbitrary(DISK_BYTES, 256), { minLength: 0, maxLength: 4 }), { minLength: 1, maxLength: 3 }),
  damage: fc.uniqueArray(fc.constantFrom(...DAMAGE_KINDS), { minLength: 1, maxLength: 2 }),
  botchedExtra: fc.array(fc.constantFrom(0, 8, 16, 24), { minLength: 2, maxLength: 2 }),
  overwritePattern: fc.integer({ min: 1, max: 255 }),
});

/** Applies the damage a case can take (a kind the image cannot take is skipped); returns what was applied. */
async function damage(path: string, testCase: RepairCase): Promise<DamageKind[]> {
  const applied: DamageKind[] = [];
  const wants = (kind: DamageKind): boolean => testCase.damage.includes(kind);
  // The guest write needs an image qemu-io still opens: it goes first.
  const inactive = poke.inactiveL2Tables(path);
  if (wants('inactive-l2-overwritten') && inactive.length > 0) {
    const { clusterBytes } = poke.layout(path);
    const guestOffset = DISK_BYTES - clusterBytes;
    await qemuIo(path, [`write -P 77 ${guestOffset} ${clusterBytes}`]);
    poke.writeU64(path, poke.l2EntryPosition(path, guestOffset), poke.COPIED | BigInt(inactive[0] ?? 0));
    await qemuIo(path, [`write -P ${testCase.overwritePattern} ${guestOffset} 512`]);
    applied.push('inactive-l2-overwritten');
  }
  const snapshots = poke.snapshotTable(path).length;
  if (wants('botched-v3') && testCase.compat === '0.10') {
    poke.botchToVersion3(path, testCase.botchedExtra);
    applied.push('botched-v3');
  }
  if (wants('snapshot-table-past-end') && snapshots > 0) {
    const { fileSize, clusterBytes } = poke.layout(path);
    poke.writeU64(path, 64, BigInt((Math.ceil(fileSize / clusterBytes) + 8) * clusterBytes));
    applied.push('snapshot-table-past-end');
  }
  if (wants('no-refcount-table')) {
    poke.writeU64(path, 48, 0n);
    poke.writeU32(path, 56, 0);
    applied.push('no-refcount-table');
  } else if (wants('refcount-table-of-zero-clusters')) {
    poke.writeU32(path, 56, 0);
    applied.push('refcount-table-of-zero-clusters');
  }
  return applied;
}

let runIndex = 0;

async function repairCase(testCase: RepairCase): Promise<void> {
  runIndex += 1;
  const name = (suffix: string): string => folder.file(`run-${runIndex}-${suffix}`);
  const image = name('image.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${testCase.clusterBytes},compat=${testCase.compat}`, image, String(DISK_BYTES)]);
  for (const [round, ops] of testCase.rounds.entries()) {
    if (ops.length > 0) await qemuIo(image, ops.map(qemuIoCommand));
    if (round < testCase.rounds.length - 1) await qemuImg(['snapshot', '-c', `s${round}`, image]);
  }
  const original = await qemuStates(image);
  const applied = await damage(image, testCase);
  const context = `${JSON.stringify(testCase)}\napplied: ${applied.join(', ')}`;

  const byQemu = name('qemu.qcow2');
  fs.copyFileSync(image, byQemu);
  const reference = referenceStates(await qemuStates(image), original);
  await qemuImg(['check', '-q', '-r', 'all', byQemu], { okCodes: [0, 1, 2, 3] });

  const repaired = checkImagePath(image, { repair: 'all' });
  const after = await qemuCheck(image);
  expect(after.code, `${context}\nafter Cowbell's repair:\n${repaired.messages.slice(-8).join('\n')}\n${after.output.slice(0, 2000)}`).toBe(0);
  expect(checkExitCode(checkImagePath(image)), context).toBe(0);
  expect(keptRangeMismatches(reference, await qemuStates(byQemu), cowbellStates(image)), context).toEqual([]);
  // Each loss is reported: a whole snapshot when its entry went, else the range its overwritten table mapped.
  if (applied.includes('snapshot-table-past-end')) expect(repaired.lost?.filter((loss) => loss.what === 'snapshot').length, context).toBe(testCase.rounds.length - 1);
  else if (applied.includes('inactive-l2-overwritten')) expect(repaired.lost?.some((loss) => loss.what === 'range'), context).toBe(true);
  else expect(repaired.lost, context).toBeUndefined();
  removeRunFiles(folder, `run-${runIndex}-`);
}

describe('repair like qemu-img, property', () => {
  it(`random damage of the kinds qemu-img repairs is repaired at least as well (${RUNS} runs, seed ${SEED})`, { timeout: 900_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, repairCase), { seed: SEED, numRuns: RUNS });
  });
});
