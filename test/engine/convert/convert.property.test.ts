/**
 * Property: convert copies any disk exactly. Sources qemu made (a qcow2 image written, zeroed and
 * discarded by qemu-io, over a backing file or not) or sparse raw files, cut into many small
 * chunks (the chunk-size seam), into raw or qcow2 outputs of random options, onto a backing file
 * of other data or not: `qemu-img compare` finds the output's disk equal to the source's, and
 * `qemu-img check` finds a qcow2 output clean. Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import * as fs from 'node:fs';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { qemuCheck, qemuCompare, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { propertySettings, removeRunFiles, qemuIoCommand, qemuIoOpArbitrary, type QemuIoOp } from '../../helpers/property-cases.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261125, 30);
const KiB = 1024;
/** A few dozen chunks of the smallest size below. */
const DISK_BYTES = 768 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface ConvertCase {
  sourceFormat: 'raw' | 'qcow2';
  /** A qcow2 source's cluster size and extended L2 (which QEMU allows from 16 KiB clusters). */
  sourceClusterBytes: number;
  sourceExtendedL2: boolean;
  /** A qcow2 source rewritten by `qemu-img convert -c` (compressed clusters), without a backing file. */
  sourceCompressed: boolean;
  /** The source's own backing file (qcow2 sources only), written by `baseOps`. */
  sourceOverBase: boolean;
  /** The output's backing file (-B), written by `baseOps`; qcow2 outputs only. */
  outputOverBase: boolean;
  baseOps: QemuIoOp[];
  ops: QemuIoOp[];
  outputFormat: 'raw' | 'qcow2';
  compat: '0.10' | '1.1';
  clusterKiB: number;
  chunkKiB: number;
  compress: boolean;
  writeBehind: boolean;
}

const opArbitrary = qemuIoOpArbitrary(DISK_BYTES, 512);

const caseArbitrary: fc.Arbitrary<ConvertCase> = fc
  .record({
    sourceFormat: fc.constantFrom<'raw' | 'qcow2'>('raw', 'qcow2', 'qcow2'),
    sourceClusterBytes: fc.constantFrom(512, 4 * KiB, 16 * KiB, 64 * KiB),
    sourceExtendedL2: fc.boolean(),
    sourceCompressed: fc.boolean(),
    sourceOverBase: fc.boolean(),
    outputOverBase: fc.boolean(),
    baseOps: fc.array(opArbitrary.map((op) => ({ ...op, kind: 'write' as const })), { maxLength: 6 }),
    ops: fc.array(opArbitrary, { minLength: 1, maxLength: 12 }),
    outputFormat: fc.constantFrom<'raw' | 'qcow2'>('raw', 'qcow2', 'qcow2'),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
    clusterKiB: fc.constantFrom(4, 16, 64),
    chunkKiB: fc.constantFrom(16, 64, 128),
    compress: fc.boolean(),
    writeBehind: fc.boolean(),
  })
  .map((raw) => ({
    ...raw,
    sourceExtendedL2: raw.sourceExtendedL2 && raw.sourceClusterBytes >= 16 * KiB,
    sourceCompressed: raw.sourceFormat === 'qcow2' && raw.sourceCompressed && !raw.sourceOverBase,
    sourceOverBase: raw.sourceFormat === 'qcow2' && raw.sourceOverBase,
    outputOverBase: raw.outputFormat === 'qcow2' && raw.outputOverBase,
    compress: raw.outputFormat === 'qcow2' && raw.compress,
  }));


/** A raw file written like the ops say, holes where nothing was written (a discard writes zeros). */
function writeSparseRaw(filePath: string, ops: QemuIoOp[]): void {
  const fd = fs.openSync(filePath, 'w');
  try {
    for (const op of ops) {
      const bytes = op.kind === 'write' ? new SeededRandom(op.pattern).bytes(op.length) : new Uint8Array(op.length);
      fs.writeSync(fd, bytes, 0, bytes.length, op.offset);
    }
    fs.ftruncateSync(fd, DISK_BYTES);
  } finally {
    fs.closeSync(fd);
  }
}

let runIndex = 0;

async function checkCase(testCase: ConvertCase): Promise<void> {
  runIndex += 1;
  const name = (suffix: string): string => folder.file(`run-${runIndex}-${suffix}`);
  const base = name('base.qcow2');
  if (testCase.sourceOverBase || testCase.outputOverBase) {
    await qemuImg(['create', '-q', '-f', 'qcow2', base, String(DISK_BYTES)]);
    // Backing data everywhere, so a hole or zero over it must be stored as zeros, and not be it.
    await qemuIo(base, [`write -P 0x5a 0 ${DISK_BYTES}`, ...testCase.baseOps.map(qemuIoCommand)]);
  }
  const source = name(`source.${testCase.sourceFormat}`);
  if (testCase.sourceFormat === 'raw') {
    writeSparseRaw(source, testCase.ops);
  } else {
    const backing = testCase.sourceOverBase ? ['-b', base, '-F', 'qcow2'] : [];
    const options = `cluster_size=${testCase.sourceClusterBytes},extended_l2=${testCase.sourceExtendedL2 ? 'on' : 'off'}`;
    const written = testCase.sourceCompressed ? name('written.qcow2') : source;
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...backing, written, String(DISK_BYTES)]);
    await qemuIo(written, testCase.ops.map(qemuIoCommand));
    if (testCase.sourceCompressed) await qemuImg(['convert', '-c', '-f', 'qcow2', '-O', 'qcow2', '-o', options, written, source]);
  }
  const target = name(`out.${testCase.outputFormat}`);
  convertImage({
    source,
    sourceFormat: testCase.sourceFormat,
    target,
    targetFormat: testCase.outputFormat,
    options:
      testCase.outputFormat === 'qcow2'
        ? { compat: testCase.compat, clusterSize: testCase.clusterKiB * KiB, ...(testCase.outputOverBase ? { backingFile: base, backingFormat: 'qcow2' as const } : {}) }
        : undefined,
    compress: testCase.compress,
    chunkBytes: testCase.chunkKiB * KiB,
    writeBehind: testCase.writeBehind,
    durable: false,
  });
  const compare = await qemuCompare(target, source, { formatA: testCase.outputFormat, formatB: testCase.sourceFormat });
  expect(compare.code, `${JSON.stringify(testCase)}\n${compare.output}`).toBe(0);
  if (testCase.outputFormat === 'qcow2') {
    const check = await qemuCheck(target);
    expect(check.code, `${JSON.stringify(testCase)}\n${check.output}`).toBe(0);
  }
  removeRunFiles(folder, `run-${runIndex}-`);
}

describe('convert, property', () => {
  it(`copies any disk exactly, through many small chunks (${RUNS} runs, seed ${SEED})`, { timeout: 300_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
