/**
 * Property: on any image qemu-img makes with an external data file — raw or not, any cluster size,
 * extended L2 or not, over a backing file or none (a backing file that may keep its own data in a
 * data file), with any history of qemu-io writes, zero writes and discards — every operation
 * Cowbell takes on it does what qemu-img (or qemu-io) does on a copy: guest writes, zero writes and
 * discards, resizes (grow and shrink), a commit into the backing file, a rebase onto nothing, a
 * check, a convert to a self-contained image; and what QEMU refuses there (an internal snapshot,
 * a compress or compact) Cowbell refuses with UNSUPPORTED_FEATURE, leaving both files byte for
 * byte. After each run both files are clean by qemu-img check, read as qemu-img's copy reads and
 * as a model of the guest says, and a raw data file reads alone as the guest disk. Seeded:
 * COWBELL_FC_SEED replays a failure, COWBELL_FC_RUNS runs a longer campaign.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { rebaseSteps } from '../../../src/shared/qcow2/chain/rebase.ts';
import { checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { applyToImage, applyToModel, type GuestOp } from '../../helpers/guest-model.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { propertySettings, qemuIoCommand, qemuIoOpArbitrary, type QemuIoOp } from '../../helpers/property-cases.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectSameBytes, refusalOf } from '../../helpers/outcomes.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261208, 8);
const KiB = 1024;
/** Sizes are in units of this, so that any cluster size divides them. */
const UNIT = 64 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

type Step =
  | { kind: 'guest'; op: QemuIoOp }
  | { kind: 'resize'; units: number }
  | { kind: 'snapshot' }
  | { kind: 'compact'; compress: boolean }
  | { kind: 'check' }
  | { kind: 'convert' }
  | { kind: 'commit'; keepOverlay: boolean }
  | { kind: 'rebase onto nothing' };

interface BackingShape {
  clusterBytes: number;
  /** The backing file keeps its own data in a data file (raw or not). */
  dataFile: 'none' | 'plain' | 'raw';
  writes: QemuIoOp[];
}

interface DataFileCase {
  clusterBytes: number;
  raw: boolean;
  extendedL2: boolean;
  units: number;
  backing: BackingShape | null;
  history: QemuIoOp[];
  steps: Step[];
}

/** Guest operations over the largest disk a case has (offsets wrap to the disk's size then). */
const MAX_UNITS = 8;
const opArbitrary = qemuIoOpArbitrary(MAX_UNITS * UNIT, 300);

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('guest' as const), op: opArbitrary }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('resize' as const), units: fc.integer({ min: 1, max: MAX_UNITS }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('snapshot' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), compress: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('check' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('convert' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('commit' as const), keepOverlay: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rebase onto nothing' as const) }) },
);

const clusterArbitrary = fc.constantFrom(512, 4 * KiB, 16 * KiB, 64 * KiB);

const caseArbitrary: fc.Arbitrary<DataFileCase> = fc
  .record({
    clusterBytes: clusterArbitrary,
    raw: fc.boolean(),
    extendedL2: fc.boolean(),
    units: fc.integer({ min: 1, max: MAX_UNITS }),
    backing: fc.option(fc.record({ clusterBytes: clusterArbitrary, dataFile: fc.constantFrom<BackingShape['dataFile']>('none', 'none', 'plain', 'raw'), writes: fc.array(opArbitrary, { maxLength: 5 }) }), { nil: null }),
    history: fc.array(opArbitrary, { maxLength: 8 }),
    steps: fc.array(stepArbitrary, { minLength: 1, maxLength: 10 }),
  })
  // A raw data file cannot have a backing file (QEMU refuses it).
  .map((shape) => ({ ...shape, backing: shape.raw ? null : shape.backing, extendedL2: shape.extendedL2 && shape.clusterBytes >= 16 * KiB }));

/** One copy of the files: the image, its data file, its backing file and the backing file's data file (by absolute path, as the headers name them). */
interface Files {
  where: string;
  image: string;
  data: string;
  base: string;
  baseData: string;
}

function filesIn(where: string): Files {
  return { where, image: path.join(where, 'disk.qcow2'), data: path.join(where, 'disk.data'), base: path.join(where, 'base.qcow2'), baseData: path.join(where, 'base.data') };
}

/** The op with its offset and length cut to a disk of `bytes`. */
function fitted(op: QemuIoOp, bytes: number): QemuIoOp {
  const offset = op.offset % bytes;
  return { ...op, offset, length: Math.min(op.length, bytes - offset) };
}

async function make(files: Files, testCase: DataFileCase): Promise<void> {
  const bytes = testCase.units * UNIT;
  let backingArgs: string[] = [];
  if (testCase.backing !== null) {
    const shape = testCase.backing;
    const dataOptions = shape.dataFile === 'none' ? '' : `,data_file=${files.baseData},data_file_raw=${shape.dataFile === 'raw' ? 'on' : 'off'}`;
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${shape.clusterBytes}${dataOptions}`, files.base, String(MAX_UNITS * UNIT)]);
    if (shape.writes.length > 0) await qemuIo(files.base, shape.writes.map((op) => qemuIoCommand(op)));
    backingArgs = ['-b', 'base.qcow2', '-F', 'qcow2'];
  }
  const options = `cluster_size=${testCase.clusterBytes},extended_l2=${testCase.extendedL2 ? 'on' : 'off'},data_file=${files.data},data_file_raw=${testCase.raw ? 'on' : 'off'}`;
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...backingArgs, files.image, String(bytes)], { cwd: files.where });
  if (testCase.history.length > 0) await qemuIo(files.image, testCase.history.map((op) => qemuIoCommand(fitted(op, bytes))));
}

/** qemu-img's copy: every file copied into `where`, each header naming its own folder's data file. */
async function copyFor(ours: Files, theirs: Files, testCase: DataFileCase): Promise<void> {
  for (const name of fs.readdirSync(ours.where)) fs.copyFileSync(path.join(ours.where, name), path.join(theirs.where, name));
  await qemuImg(['amend', '-q', '-f', 'qcow2', '-o', `data_file=${theirs.data}`, theirs.image], { cwd: theirs.where });
  if (testCase.backing !== null && testCase.backing.dataFile !== 'none') await qemuImg(['amend', '-q', '-f', 'qcow2', '-o', `data_file=${theirs.baseData}`, theirs.base]);
}

function hashes(files: Files): string[] {
  return [files.image, files.data, files.base, files.baseData].map((file) => (fs.existsSync(file) ? fileHash(file) : 'absent'));
}


function guestOp(op: QemuIoOp): GuestOp {
  if (op.kind === 'write') return { kind: 'write', offset: op.offset, data: new Uint8Array(op.length).fill(op.pattern) };
  return { kind: op.kind, offset: op.offset, length: op.length };
}

let runIndex = 0;
const tally = new Map<string, number>();
function count(what: string): void {
  tally.set(what, (tally.get(what) ?? 0) + 1);
}

async function checkCase(testCase: DataFileCase): Promise<void> {
  const run = ++runIndex;
  const runFolder = folder.file(`run-${run}`);
  const ours = filesIn(path.join(runFolder, 'ours'));
  const theirs = filesIn(path.join(runFolder, 'theirs'));
  fs.mkdirSync(ours.where, { recursive: true });
  fs.mkdirSync(theirs.where, { recursive: true });
  const context = `run ${run}: ${JSON.stringify(testCase)}`;
  try {
    await make(ours, testCase);
    await copyFor(ours, theirs, testCase);
    let hasBacking = testCase.backing !== null;
    const model = { guest: await rawOf(ours.image) };
    for (const [index, step] of testCase.steps.entries()) {
      const where = `${context}: step ${index} ${JSON.stringify(step)}`;
      const size = model.guest.length;
      if (step.kind === 'guest') {
        const op = fitted(step.op, size);
        const image = Qcow2Image.open(ours.image);
        try {
          applyToImage(image, guestOp(op));
        } finally {
          image.close();
        }
        applyToModel(model.guest, guestOp(op), { clusterSize: testCase.clusterBytes, virtualSize: size, version: 3, hasBacking });
        await qemuIo(theirs.image, [qemuIoCommand(op)]);
        count(`guest ${op.kind}`);
      } else if (step.kind === 'resize') {
        const newSize = step.units * UNIT;
        resizeImagePath(ours.image, newSize, { shrink: true, discardData: true });
        await qemuImg(['resize', '-q', '-f', 'qcow2', ...(newSize < size ? ['--shrink'] : []), theirs.image, String(newSize)]);
        const next = new Uint8Array(newSize);
        next.set(model.guest.subarray(0, Math.min(size, newSize)));
        model.guest = next;
        count('resize');
      } else if (step.kind === 'snapshot' || step.kind === 'compact') {
        const before = hashes(ours);
        const error = refusalOf(() => (step.kind === 'snapshot' ? takeSnapshot(ours.image, 'never') : rewriteImage({ source: ours.image, compression: step.compress ? 'compress' : 'keep' })));
        expect(error?.code, `${where}: refused`).toBe('UNSUPPORTED_FEATURE');
        expect(hashes(ours), `${where}: the files after the refusal`).toEqual(before);
        if (step.kind === 'snapshot') expect((await qemuImg(['snapshot', '-c', 'never', theirs.image], { okCodes: [1] })).stderr, `${where}: qemu-img refuses too`).toMatch(/not supported/i);
        count(`refused ${step.kind}`);
      } else if (step.kind === 'check') {
        const result = checkImagePath(ours.image);
        expect([result.corruptions ?? 0, result.leaks ?? 0, result['check-errors']], `${where}: Cowbell's check: ${result.messages.join('; ')}`).toEqual([0, 0, 0]);
        const qemu = await qemuCheck(ours.image);
        expect(qemu.code, `${where}: qemu-img check: ${qemu.output}`).toBe(0);
        expect(result['allocated-clusters'], `${where}: allocated clusters beside qemu-img's`).toBe(qemu.report?.['allocated-clusters']);
        count('check');
      } else if (step.kind === 'convert') {
        const copy = path.join(runFolder, 'converted.qcow2');
        convertImage({ source: ours.image, target: copy, targetFormat: 'qcow2', overwrite: true });
        const info = await qemuInfo(copy);
        expect(JSON.stringify(info), `${where}: the copy has no data file`).not.toMatch(/data-file/);
        expectSameBytes(await rawOf(copy), model.guest, `${where}: the converted copy`);
        fs.rmSync(copy);
        count('convert');
      } else if (!hasBacking) {
        // Commit and rebase need a backing file: Cowbell refuses, as qemu-img does (rebase onto nothing is a no-op there).
        const before = hashes(ours);
        if (step.kind === 'commit') {
          expect(refusalOf(() => runSteps(commitSteps({ image: ours.image, keepOverlay: step.keepOverlay })))?.code, `${where}: refused`).toBe('INVALID_ARGUMENT');
          expect(hashes(ours), `${where}: the files after the refusal`).toEqual(before);
        } else {
          runSteps(rebaseSteps({ image: ours.image, backingFile: null }));
          await qemuImg(['rebase', '-q', '-f', 'qcow2', '-b', '', theirs.image]);
        }
        count(`${step.kind} without a backing file`);
      } else if (step.kind === 'commit') {
        runSteps(commitSteps({ image: ours.image, keepOverlay: step.keepOverlay }));
        await qemuImg(['commit', '-q', '-f', 'qcow2', ...(step.keepOverlay ? ['-d'] : []), theirs.image]);
        expectSameBytes(await rawOf(ours.base), await rawOf(theirs.base), `${where}: the backing file beside qemu-img's`);
        expectSameBytes(await rawOf(ours.image), model.guest, `${where}: the image after the commit`);
        count('commit');
      } else {
        runSteps(rebaseSteps({ image: ours.image, backingFile: null }));
        await qemuImg(['rebase', '-q', '-f', 'qcow2', '-b', '', theirs.image]);
        hasBacking = false;
        count('rebase onto nothing');
      }
    }
    for (const file of testCase.backing === null ? [ours.image] : [ours.image, ours.base]) {
      const check = await qemuCheck(file);
      expect(check.code, `${context}: qemu-img check of ${path.basename(file)}: ${check.output}`).toBe(0);
    }
    const read = await rawOf(ours.image);
    expectSameBytes(read, model.guest, `${context}: the image beside the model`);
    expectSameBytes(read, await rawOf(theirs.image), `${context}: the image beside qemu-img's`);
    if (testCase.backing !== null) expectSameBytes(await rawOf(ours.base), await rawOf(theirs.base), `${context}: the backing file beside qemu-img's`);
    if (testCase.raw) {
      const dataFile = new Uint8Array(fs.readFileSync(ours.data));
      expect(dataFile.length, `${context}: the raw data file covers the disk`).toBeGreaterThanOrEqual(model.guest.length);
      expectSameBytes(dataFile.subarray(0, model.guest.length), model.guest, `${context}: the raw data file read alone`);
    }
  } finally {
    fs.rmSync(runFolder, { recursive: true, force: true });
  }
}

describe('images with an external data file, against qemu-img', () => {
  it(`writes, resizes, commits, rebases, checks and converts as qemu-img does, and refuses what QEMU refuses leaving the files as they were (${RUNS} runs, seed ${SEED})`, { timeout: 900_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
    console.log(`data-file property: ${JSON.stringify([...tally])}`);
  });
});
