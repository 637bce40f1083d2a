/**
 * Property: Cowbell's map of any image qemu made is qemu-img map's, entry for entry: random
 * writes, zero writes and discards (qemu-io) on images of every cluster size, with and without
 * extended L2, over a qcow2 or raw backing file or none, some rewritten by `qemu-img convert -c`.
 * Seeded (COWBELL_FC_SEED overrides) so a failure replays.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { mapImage } from '../../../src/shared/qcow2/image/map.ts';
import { qemuImg, qemuIo, qemuMap, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { propertySettings, removeRunFiles, qemuIoCommand, qemuIoOpArbitrary, type QemuIoOp } from '../../helpers/property-cases.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261126, 25);
const KiB = 1024;
const DISK_BYTES = 1536 * KiB;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

interface MapCase {
  clusterBytes: number;
  extendedL2: boolean;
  compat: '0.10' | '1.1';
  backing: 'none' | 'qcow2' | 'raw';
  baseOps: QemuIoOp[];
  ops: QemuIoOp[];
  compressed: boolean;
}

const opArbitrary = qemuIoOpArbitrary(DISK_BYTES, 640, 0);

const caseArbitrary: fc.Arbitrary<MapCase> = fc
  .record({
    clusterBytes: fc.constantFrom(512, 4 * KiB, 16 * KiB, 64 * KiB),
    extendedL2: fc.boolean(),
    compat: fc.constantFrom<'0.10' | '1.1'>('0.10', '1.1'),
    backing: fc.constantFrom<MapCase['backing']>('none', 'qcow2', 'raw'),
    baseOps: fc.array(opArbitrary.map((op) => ({ ...op, kind: 'write' as const })), { maxLength: 5 }),
    ops: fc.array(opArbitrary, { minLength: 1, maxLength: 12 }),
    compressed: fc.boolean(),
  })
  .map((raw) => {
    const extendedL2 = raw.extendedL2 && raw.compat === '1.1' && raw.clusterBytes >= 16 * KiB;
    return { ...raw, extendedL2, compressed: raw.compressed && raw.backing === 'none' };
  });


let runIndex = 0;

async function checkCase(testCase: MapCase): Promise<void> {
  runIndex += 1;
  const name = (suffix: string): string => folder.file(`run-${runIndex}-${suffix}`);
  const options = `cluster_size=${testCase.clusterBytes},compat=${testCase.compat},extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`;
  const backingArgs: string[] = [];
  if (testCase.backing !== 'none') {
    const base = name(`base.${testCase.backing}`);
    await qemuImg(['create', '-q', '-f', testCase.backing, base, String(DISK_BYTES)]);
    if (testCase.baseOps.length > 0) await qemuIo(base, testCase.baseOps.map(qemuIoCommand), { format: testCase.backing });
    backingArgs.push('-b', base, '-F', testCase.backing);
  }
  const written = name('written.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, ...backingArgs, written, String(DISK_BYTES)]);
  await qemuIo(written, testCase.ops.map(qemuIoCommand));
  let image = written;
  if (testCase.compressed) {
    image = name('compressed.qcow2');
    await qemuImg(['convert', '-c', '-f', 'qcow2', '-O', 'qcow2', '-o', options, written, image]);
  }
  const opened = Qcow2Image.open(image, { readOnly: true });
  let ours;
  try {
    ours = mapImage(opened).map(({ compressed: _compressed, ...rest }) => rest);
  } finally {
    opened.close();
  }
  expect(ours, JSON.stringify(testCase)).toEqual(await qemuMap(image));
  removeRunFiles(folder, `run-${runIndex}-`);
}

describe('map, property', () => {
  it(`matches qemu-img map on any image qemu made (${RUNS} runs, seed ${SEED})`, { timeout: 300_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
