/**
 * Property: snapshots taken, reverted to, deleted and renamed by Cowbell and by qemu-img in any
 * order, between guest writes, zero writes and discards by qemu-io, leave an image `qemu-img check`
 * finds clean in which qemu reads the current disk and every snapshot exactly as a plain model
 * says, on images of several cluster sizes, compat 0.10 and 1.1, extended L2 and not.
 * Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeSnapshotName, removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { firstDifference, qemuCheck, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { propertySettings } from '../../helpers/property-cases.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261128, 12);
const KiB = 1024;
const DISK_BYTES = 512 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

type Tool = 'cowbell' | 'qemu';
type Step =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'zero'; offset: number; length: number }
  /** Whole clusters only: qemu ignores a discard of part of one. */
  | { kind: 'discard'; cluster: number; clusters: number }
  | { kind: 'take'; tool: Tool }
  | { kind: 'revert'; tool: Tool; pick: number }
  | { kind: 'delete'; tool: Tool; pick: number }
  | { kind: 'rename'; pick: number };

interface SnapshotCase {
  clusterBytes: number;
  compat: '0.10' | '1.1';
  extendedL2: boolean;
  steps: Step[];
}

const tool = fc.constantFrom<Tool>('cowbell', 'qemu');
const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), offset: fc.nat(DISK_BYTES - 1), length: fc.integer({ min: 1, max: 96 * KiB }), seed: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('zero' as const), offset: fc.nat(DISK_BYTES / 512 - 1).map((sector) => sector * 512), length: fc.integer({ min: 1, max: 128 }).map((sectors) => sectors * 512) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('discard' as const), cluster: fc.nat(63), clusters: fc.integer({ min: 1, max: 8 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('take' as const), tool }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('revert' as const), tool, pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), tool, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), pick: fc.nat() }) },
);

const caseArbitrary: fc.Arbitrary<SnapshotCase> = fc
  .record({
    clusterBytes: fc.constantFrom(512, 4 * KiB, 64 * KiB),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
    extendedL2: fc.boolean(),
    steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 24 }),
  })
  .map((raw) => ({ ...raw, extendedL2: raw.extendedL2 && raw.compat === '1.1' && raw.clusterBytes >= 16 * KiB }));

let runIndex = 0;

async function checkCase(testCase: SnapshotCase): Promise<void> {
  runIndex += 1;
  const image = folder.file(`run-${runIndex}.qcow2`);
  const options = `cluster_size=${testCase.clusterBytes},compat=${testCase.compat},extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`;
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, String(DISK_BYTES)]);
  let current = new Uint8Array(DISK_BYTES);
  const snapshots = new Map<string, Uint8Array>();
  let named = 0;
  const pick = (index: number): string | undefined => [...snapshots.keys()][index % Math.max(1, snapshots.size)];
  const context = JSON.stringify(testCase);
  for (const step of testCase.steps) {
    if (step.kind === 'write') {
      // A pattern byte per write (qemu-io writes patterns); successive writes differ.
      const length = Math.min(step.length, DISK_BYTES - step.offset);
      await qemuIo(image, [`write -P ${(step.seed % 255) + 1} ${step.offset} ${length}`]);
      current.fill((step.seed % 255) + 1, step.offset, step.offset + length);
    } else if (step.kind === 'zero') {
      const length = Math.min(step.length, DISK_BYTES - step.offset);
      await qemuIo(image, [`write -z ${step.offset} ${length}`]);
      current.fill(0, step.offset, step.offset + length);
    } else if (step.kind === 'discard') {
      const start = step.cluster * testCase.clusterBytes;
      if (start >= DISK_BYTES) continue;
      const length = Math.min(step.clusters * testCase.clusterBytes, DISK_BYTES - start);
      await qemuIo(image, [`discard ${start} ${length}`]);
      current.fill(0, start, start + length);
    } else if (step.kind === 'take') {
      const name = `s${++named}`;
      if (step.tool === 'cowbell') takeSnapshot(image, name);
      else await qemuImg(['snapshot', '-c', name, image]);
      snapshots.set(name, current.slice());
    } else if (step.kind === 'revert') {
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
      const bytes = snapshots.get(name) ?? current;
      snapshots.delete(name);
      snapshots.set(newName, bytes);
    }
  }
  const check = await qemuCheck(image);
  expect(check.code, `${context}\n${check.output}`).toBe(0);
  const actual = await rawOf(image);
  expect(firstDifference(actual, current), `${context}: current state`).toBe(-1);
  for (const [name, bytes] of snapshots) {
    const read = await rawOf(image, { snapshot: name });
    expect(firstDifference(read, bytes), `${context}: snapshot ${name}`).toBe(-1);
  }
  fs.rmSync(image);
}

describe('snapshots, property', () => {
  it(`any mix of Cowbell's and qemu-img's snapshot operations between guest writes leaves every state as a model says (${RUNS} runs, seed ${SEED})`, { timeout: 600_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
