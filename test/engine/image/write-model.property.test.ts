/**
 * Property: any sequence of writes, zero writes, discards, flushes and close/reopen leaves an
 * image that reads back, through Cowbell and through qemu-img, exactly like a plain byte array given the same operations, and that
 * `qemu-img check` finds clean (and, on an image with a qemu-img snapshot, the snapshot unchanged). Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { createImage } from '../../../src/shared/qcow2/image/create.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { applyToImage, applyToModel, type DiscardSemantics, type GuestOp } from '../../helpers/guest-model.ts';
import { configName, cowbellOptions, KiB, qemuOptions, type FormatConfig } from '../../helpers/image-matrix.ts';
import { firstDifference, qemuCheck, qemuImg, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

const SEED = Number(process.env.COWBELL_FC_SEED ?? 20260415);
const RUNS = Number(process.env.COWBELL_FC_RUNS ?? 50);

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

type Step = { kind: 'op'; op: GuestOp } | { kind: 'flush' } | { kind: 'reopen' };

interface PropertyCase {
  config: FormatConfig;
  virtualSize: number;
  /** Bytes of a raw backing file, or none. */
  backingSize: number | null;
  /** Start from a qemu-img convert -c image with a snapshot qemu-img took, instead of an empty Cowbell image. */
  qemuSnapshot?: boolean;
}

const cases: PropertyCase[] = [
  { config: { compat: '0.10', clusterSize: 64 * KiB, refcountBits: 16, extendedL2: false, compressionType: 'zlib' }, virtualSize: 1024 * KiB + 1536, backingSize: null },
  { config: { compat: '1.1', clusterSize: 512, refcountBits: 1, extendedL2: false, compressionType: 'zlib' }, virtualSize: 40 * KiB + 512, backingSize: null },
  { config: { compat: '1.1', clusterSize: 64 * KiB, refcountBits: 16, extendedL2: true, compressionType: 'zlib' }, virtualSize: 1024 * KiB + 1536, backingSize: null },
  { config: { compat: '1.1', clusterSize: 4 * KiB, refcountBits: 16, extendedL2: false, compressionType: 'zlib' }, virtualSize: 256 * KiB + 512, backingSize: 256 * KiB + 512 },
  { config: { compat: '0.10', clusterSize: 4 * KiB, refcountBits: 16, extendedL2: false, compressionType: 'zlib' }, virtualSize: 128 * KiB + 1024, backingSize: 128 * KiB + 1024 },
  { config: { compat: '1.1', clusterSize: 4 * KiB, refcountBits: 16, extendedL2: false, compressionType: 'zlib' }, virtualSize: 256 * KiB + 512, backingSize: null, qemuSnapshot: true },
];

/** The starting image of a qemuSnapshot case and its guest bytes (also the snapshot's, forever). */
interface SnapshotStart {
  image: string;
  bytes: Uint8Array;
}

async function qemuSnapshotStart(testCase: PropertyCase, seed: number): Promise<SnapshotStart> {
  const bytes = new Uint8Array(testCase.virtualSize);
  bytes.set(compressibleBytes(testCase.virtualSize / 2, seed));
  bytes.set(new SeededRandom(seed).bytes(testCase.virtualSize / 4), testCase.virtualSize / 2);
  const source = folder.file('snapshot-start.raw');
  const image = folder.file('snapshot-start.qcow2');
  fs.writeFileSync(source, bytes);
  await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', qemuOptions(testCase.config), source, image]);
  await qemuImg(['snapshot', '-c', 'S', image]);
  return { image, bytes };
}

/** Ranges biased towards what matters: cluster-aligned, subcluster-aligned and arbitrary, up to three clusters long. */
function rangeArbitrary(virtualSize: number, clusterSize: number): fc.Arbitrary<{ offset: number; length: number }> {
  const grain = fc.constantFrom(clusterSize, Math.max(512, clusterSize / 32), 1);
  return fc.tuple(grain, fc.nat(virtualSize - 1), fc.integer({ min: 1, max: 3 * clusterSize })).map(([step, rawOffset, rawLength]) => {
    const offset = Math.floor(rawOffset / step) * step;
    const length = Math.min(virtualSize - offset, Math.max(1, Math.ceil(rawLength / step) * step));
    return { offset, length };
  });
}

function stepArbitrary(virtualSize: number, clusterSize: number): fc.Arbitrary<Step> {
  const range = rangeArbitrary(virtualSize, clusterSize);
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(range, fc.nat()).map(([{ offset, length }, seed]): Step => ({ kind: 'op', op: { kind: 'write', offset, data: new SeededRandom(seed).bytes(length) } })) },
    { weight: 2, arbitrary: range.map(({ offset, length }): Step => ({ kind: 'op', op: { kind: 'zero', offset, length } })) },
    { weight: 2, arbitrary: range.map(({ offset, length }): Step => ({ kind: 'op', op: { kind: 'discard', offset, length } })) },
    { weight: 1, arbitrary: fc.constant<Step>({ kind: 'flush' }) },
    { weight: 1, arbitrary: fc.constant<Step>({ kind: 'reopen' }) },
  );
}

function describeStep(step: Step): string {
  if (step.kind !== 'op') return step.kind;
  const length = step.op.kind === 'write' ? step.op.data.length : step.op.length;
  return `${step.op.kind}(${step.op.offset}, ${length})`;
}

let runCounter = 0;

async function runSteps(testCase: PropertyCase, backing: Uint8Array | null, start: SnapshotStart | null, steps: Step[]): Promise<void> {
  const { config, virtualSize } = testCase;
  const image = folder.file(`run-${runCounter++}.qcow2`);
  const model = new Uint8Array(virtualSize);
  if (start !== null) {
    fs.copyFileSync(start.image, image);
    model.set(start.bytes);
  } else {
    createImage({ path: image, size: virtualSize, ...cowbellOptions(config), ...(backing !== null ? { backingFile: 'backing.raw', backingFormat: 'raw' as const } : {}) });
  }
  if (backing !== null) model.set(backing.subarray(0, virtualSize));
  const semantics: DiscardSemantics = { clusterSize: config.clusterSize, virtualSize, version: config.compat === '0.10' ? 2 : 3, hasBacking: backing !== null };
  let opened = Qcow2Image.open(image);
  try {
    for (const step of steps) {
      if (step.kind === 'flush') opened.flush();
      else if (step.kind === 'reopen') {
        opened.close();
        opened = Qcow2Image.open(image);
      } else {
        applyToImage(opened, step.op);
        applyToModel(model, step.op, semantics);
      }
    }
  } finally {
    opened.close();
  }
  const reopened = Qcow2Image.open(image, { readOnly: true });
  let difference: number;
  try {
    difference = firstDifference(reopened.read(0, virtualSize), model);
  } finally {
    reopened.close();
  }
  if (difference !== -1) throw new Error(`byte ${difference} reads back wrong after ${steps.map(describeStep).join(', ')}`);
  // qemu-img reads the same (Cowbell's reader could share a mistake with its writer).
  const qemuDifference = firstDifference(await rawOf(image), model);
  if (qemuDifference !== -1) throw new Error(`byte ${qemuDifference} reads back wrong through qemu-img after ${steps.map(describeStep).join(', ')}`);
  const check = await qemuCheck(image);
  if (check.code !== 0) throw new Error(`qemu-img check exited ${check.code} after ${steps.map(describeStep).join(', ')}:\n${check.output}`);
  if (start !== null) {
    const snapshot = await rawOf(image, { snapshot: 'S' });
    const changed = firstDifference(snapshot, start.bytes);
    if (changed !== -1) throw new Error(`the snapshot's byte ${changed} changed after ${steps.map(describeStep).join(', ')}`);
  }
  fs.rmSync(image);
}

describe('writes, zero writes, discards, flushes and reopens agree with a byte-array model', () => {
  cases.forEach((testCase, index) => {
    const name = `${configName(testCase.config)}${testCase.backingSize !== null ? ' over a raw backing file' : ''}${testCase.qemuSnapshot ? ', compressed by qemu-img, after qemu-img snapshot -c' : ''}`;
    it(`${name} (${RUNS} runs, seed ${SEED + index})`, { timeout: 180_000 }, async () => {
      let backing: Uint8Array | null = null;
      if (testCase.backingSize !== null) {
        backing = new SeededRandom(SEED + index).bytes(testCase.backingSize);
        fs.writeFileSync(folder.file('backing.raw'), backing);
      }
      const start = testCase.qemuSnapshot ? await qemuSnapshotStart(testCase, SEED + index) : null;
      const property = fc.asyncProperty(fc.array(stepArbitrary(testCase.virtualSize, testCase.config.clusterSize), { minLength: 1, maxLength: 30 }), (steps) =>
        runSteps(testCase, backing, start, steps),
      );
      await fc.assert(property, { seed: SEED + index, numRuns: RUNS });
    });
  });
});
