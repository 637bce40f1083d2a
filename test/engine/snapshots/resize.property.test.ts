/**
 * Property: Cowbell's and qemu-img's resizes, grows and shrinks, in any order between guest writes
 * and snapshots taken, reverted to and deleted by either tool, on plain disks and overlays over a
 * larger backing file, leave an image `qemu-img check`
 * finds clean, in which the current disk and every snapshot (at its own size) read as a plain
 * model says. Small clusters make the active L1 grow past its first cluster within 3 MiB.
 * Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { propertySettings } from '../../helpers/property-cases.ts';
import { firstDifference, qemuCheck, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261203, 10);
const KiB = 1024;
const START_BYTES = 256 * KiB;
const MAX_SECTORS = 6144;
const BACKING_BYTES = 4 * 1024 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

type Tool = 'cowbell' | 'qemu';
type Step =
  | { kind: 'write'; at: number; sectors: number; pattern: number }
  | { kind: 'resize'; tool: Tool; sectors: number }
  | { kind: 'take'; tool: Tool }
  | { kind: 'revert'; tool: Tool; pick: number }
  | { kind: 'delete'; tool: Tool; pick: number };

interface ResizeCase {
  clusterBytes: number;
  compat: '0.10' | '1.1';
  refcountBits: 16 | 64;
  extendedL2: boolean;
  /** An overlay on a 4 MiB backing file, larger than the disk ever grows: each grow must hide it with zeros. */
  overlay: boolean;
  steps: Step[];
}

const tool = fc.constantFrom<Tool>('cowbell', 'qemu');
const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), sectors: fc.integer({ min: 1, max: 160 }), pattern: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('resize' as const), tool, sectors: fc.integer({ min: 1, max: MAX_SECTORS }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('take' as const), tool }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revert' as const), tool, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), tool, pick: fc.nat() }) },
);

const caseArbitrary: fc.Arbitrary<ResizeCase> = fc
  .record({
    clusterBytes: fc.constantFrom(512, 4 * KiB, 64 * KiB),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1', '1.1'),
    refcountBits: fc.constantFrom<16 | 64>(16, 64),
    extendedL2: fc.boolean(),
    overlay: fc.boolean(),
    steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 16 }),
  })
  .map((raw) => ({
    ...raw,
    extendedL2: raw.extendedL2 && raw.compat === '1.1' && raw.clusterBytes >= 16 * KiB,
    refcountBits: raw.compat === '1.1' ? raw.refcountBits : (16 as const),
    // qemu-img writes zeros over a larger backing file on a v2 grow; Cowbell refuses that (no zero clusters), tested on its own.
    overlay: raw.overlay && raw.compat === '1.1',
  }));

function resized(bytes: Uint8Array, size: number): Uint8Array {
  const next = new Uint8Array(size);
  next.set(bytes.subarray(0, Math.min(size, bytes.length)));
  return next;
}

/** A snapshot's guest bytes at its own size: qemu-img applies it to a copy (`convert -l` reads it at the current size). */
async function snapshotBytes(image: string, name: string): Promise<Uint8Array> {
  const copy = `${image}.applied`;
  fs.copyFileSync(image, copy);
  try {
    await qemuImg(['snapshot', '-a', name, copy]);
    return await rawOf(copy);
  } finally {
    fs.rmSync(copy, { force: true });
  }
}

let runIndex = 0;

async function checkCase(testCase: ResizeCase): Promise<void> {
  runIndex += 1;
  const image = folder.file(`run-${runIndex}.qcow2`);
  const options = `cluster_size=${testCase.clusterBytes},compat=${testCase.compat},refcount_bits=${testCase.refcountBits},extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`;
  let current: Uint8Array = new Uint8Array(START_BYTES);
  if (testCase.overlay) {
    const base = folder.file(`run-${runIndex}-base.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', base, String(BACKING_BYTES)]);
    await qemuIo(base, [`write -P 0x5b 0 ${BACKING_BYTES}`]);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, '-b', base, '-F', 'qcow2', image, String(START_BYTES)]);
    current.fill(0x5b);
  } else await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, String(START_BYTES)]);
  const snapshots = new Map<string, Uint8Array>();
  let named = 0;
  const pick = (index: number): string | undefined => [...snapshots.keys()][index % Math.max(1, snapshots.size)];
  const context = JSON.stringify(testCase);
  for (const step of testCase.steps) {
    if (step.kind === 'write') {
      const offset = Math.floor((step.at * current.length) / 512) * 512;
      const length = Math.min(step.sectors * 512, current.length - offset);
      await qemuIo(image, [`write -P ${step.pattern} ${offset} ${length}`]);
      current.fill(step.pattern, offset, offset + length);
    } else if (step.kind === 'resize') {
      // qemu-img's own sizes are whole clusters: growing from a size inside a cluster it shows what
      // lies there past the old end (it does not clear it; Cowbell does, tested on its own).
      const size = step.tool === 'qemu' ? Math.max(1, Math.round((step.sectors * 512) / testCase.clusterBytes)) * testCase.clusterBytes : step.sectors * 512;
      // qemu-img refuses a v2 image with snapshots (they record no size of their own): so does Cowbell.
      const refused = testCase.compat === '0.10' && snapshots.size > 0 && size !== current.length;
      if (step.tool === 'cowbell') {
        let code = 'none';
        try {
          resizeImagePath(image, size, { shrink: true, discardData: true });
        } catch (error) {
          if (!(error instanceof Qcow2Error)) throw error;
          code = error.code;
        }
        expect(code, context).toBe(refused ? 'INVALID_ARGUMENT' : 'none');
      } else {
        const result = await qemuImg(['resize', '-q', '--shrink', image, String(size)], { okCodes: [0, 1] });
        expect(result.code, `${context}\n${result.stderr}`).toBe(refused ? 1 : 0);
      }
      if (!refused) {
        const oldSize = current.length;
        current = resized(current, size);
        const inCluster = oldSize % testCase.clusterBytes;
        if (step.tool === 'qemu' && size > oldSize && inCluster !== 0) {
          // A grow by qemu-img from inside a cluster: what it shows there is its own affair (see above).
          const end = Math.min(size, oldSize - inCluster + testCase.clusterBytes);
          current.set((await rawOf(image)).subarray(oldSize, end), oldSize);
        }
      }
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
    } else {
      const name = pick(step.pick);
      if (name === undefined) continue;
      if (step.tool === 'cowbell') removeSnapshot(image, name);
      else await qemuImg(['snapshot', '-d', name, image]);
      snapshots.delete(name);
    }
  }
  const check = await qemuCheck(image);
  expect(check.code, `${context}\n${check.output}`).toBe(0);
  expect(firstDifference(await rawOf(image), current), `${context}: current state`).toBe(-1);
  for (const [name, bytes] of snapshots) expect(firstDifference(await snapshotBytes(image, name), bytes), `${context}: snapshot ${name}`).toBe(-1);
  fs.rmSync(image);
  fs.rmSync(folder.file(`run-${runIndex}-base.qcow2`), { force: true });
}

describe('resize, property', () => {
  it(`any mix of Cowbell's and qemu-img's resizes, between guest writes and snapshot operations, leaves every state as a model says (${RUNS} runs, seed ${SEED})`, { timeout: 600_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
