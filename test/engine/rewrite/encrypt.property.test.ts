/**
 * Property: whatever history a plain image has — guest writes, zero writes, discards and compressed
 * writes by qemu-io, snapshots taken, applied and deleted by qemu-img — Cowbell's encrypt (a
 * rewrite to LUKS, any cipher, any compression policy), a compact of the encrypted image, and its
 * decrypt back to a plain image each give an image that `qemu-img check` (with the passphrase)
 * finds clean, with no compressed cluster while encrypted, the same snapshot listing, and every
 * state reading, decrypted by qemu-img, as a plain model of the guest says. Seeded:
 * COWBELL_FC_SEED replays a failure, COWBELL_FC_RUNS runs a longer campaign.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rewriteImage, type CompressionPolicy } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import type { LuksCipherChoice } from '../../../src/shared/qcow2/crypto/luks-keys.ts';
import { imageOpts, rawOfEncrypted, secret, snapshotRows } from '../../helpers/encrypted-images.ts';
import { propertySettings } from '../../helpers/property-cases.ts';
import { firstDifference, qemuCheck, qemuImg, rawOf, runTool, tempDir, type QemuCheckReport, type TempDir } from '../../helpers/qemu.ts';

const { seed: SEED, runs: RUNS } = propertySettings(20261207, 6);
const KiB = 1024;
const PASS = 'moo-cow-pass';
const QUICK_KEY = { iterations: 1000, digestIterations: 1000 } as const;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

type Step =
  | { kind: 'write'; offset: number; length: number; pattern: number }
  | { kind: 'zero'; sector: number; sectors: number }
  | { kind: 'discard'; cluster: number; clusters: number }
  | { kind: 'compressed'; cluster: number; pattern: number }
  | { kind: 'take' }
  | { kind: 'apply'; pick: number }
  | { kind: 'delete'; pick: number };

interface EncryptCase {
  clusterBytes: number;
  refcountBits: number;
  extendedL2: boolean;
  clusters: number;
  steps: Step[];
  cipher: LuksCipherChoice;
  encryptPolicy: CompressionPolicy;
  compactPolicy: CompressionPolicy | null;
  decryptPolicy: CompressionPolicy;
}

const stepArbitrary: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), offset: fc.nat(), length: fc.integer({ min: 1, max: 80 * KiB }), pattern: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('zero' as const), sector: fc.nat(), sectors: fc.integer({ min: 1, max: 160 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('discard' as const), cluster: fc.nat(), clusters: fc.integer({ min: 1, max: 6 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('compressed' as const), cluster: fc.nat(), pattern: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('take' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('apply' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }) },
);

const policy = fc.constantFrom<CompressionPolicy>('keep', 'uncompress', 'compress');
/** An encrypted output is never compressed (QEMU would store those clusters unencrypted): Cowbell refuses 'compress' there. */
const encryptedPolicy = fc.constantFrom<CompressionPolicy>('keep', 'uncompress');

const caseArbitrary: fc.Arbitrary<EncryptCase> = fc
  .record({
    clusterBytes: fc.constantFrom(512, 4 * KiB, 16 * KiB, 64 * KiB),
    refcountBits: fc.constantFrom(8, 16, 16, 64),
    extendedL2: fc.boolean(),
    clusters: fc.integer({ min: 16, max: 120 }),
    steps: fc.array(stepArbitrary, { minLength: 2, maxLength: 20 }),
    cipher: fc.constantFrom<LuksCipherChoice>(
      { aesKeyBits: 256, mode: 'xts', ivGenerator: 'plain64' },
      { aesKeyBits: 128, mode: 'cbc', ivGenerator: 'essiv' },
      { aesKeyBits: 256, mode: 'cbc', ivGenerator: 'plain64' },
      { aesKeyBits: 128, mode: 'xts', ivGenerator: 'plain' },
    ),
    encryptPolicy: encryptedPolicy,
    compactPolicy: fc.option(encryptedPolicy, { nil: null }),
    decryptPolicy: policy,
  })
  .map((raw) => ({ ...raw, extendedL2: raw.extendedL2 && raw.clusterBytes >= 16 * KiB }));

/** qemu-img check --output=json with the passphrase. */
async function checkWithKey(image: string): Promise<{ code: number; report: QemuCheckReport | null; output: string }> {
  const result = await runTool('qemu-img', ['check', ...secret('sec0', PASS), '--output=json', '--image-opts', imageOpts(image, 'sec0')], { okCodes: [0, 1, 2, 3] });
  let report: QemuCheckReport | null;
  try {
    report = JSON.parse(result.stdout) as QemuCheckReport;
  } catch {
    report = null;
  }
  return { code: result.code, report, output: result.stdout + result.stderr };
}

let runIndex = 0;

async function checkCase(testCase: EncryptCase): Promise<void> {
  const run = ++runIndex;
  const runFolder = folder.file(`run-${run}`);
  fs.mkdirSync(runFolder, { recursive: true });
  const { clusterBytes } = testCase;
  const diskBytes = testCase.clusters * clusterBytes;
  const context = `run ${run}: ${JSON.stringify(testCase)}`;
  const image = path.join(runFolder, 'plain.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${clusterBytes},compat=1.1,refcount_bits=${testCase.refcountBits},extended_l2=${testCase.extendedL2 ? 'on' : 'off'}`, image, String(diskBytes)]);

  let current = new Uint8Array(diskBytes);
  const snapshots = new Map<string, Uint8Array>();
  let named = 0;
  const pick = (index: number): string | undefined => [...snapshots.keys()][index % Math.max(1, snapshots.size)];
  for (const step of testCase.steps) {
    if (step.kind === 'write' || step.kind === 'zero' || step.kind === 'discard' || step.kind === 'compressed') {
      let command: string;
      if (step.kind === 'write') {
        const offset = step.offset % diskBytes;
        const length = Math.min(step.length, diskBytes - offset);
        command = `write -P ${step.pattern} ${offset} ${length}`;
        current.fill(step.pattern, offset, offset + length);
      } else if (step.kind === 'zero') {
        const offset = (step.sector * 512) % diskBytes;
        const length = Math.min(step.sectors * 512, diskBytes - offset);
        command = `write -z ${offset} ${length}`;
        current.fill(0, offset, offset + length);
      } else if (step.kind === 'discard') {
        const start = (step.cluster % testCase.clusters) * clusterBytes;
        const length = Math.min(step.clusters * clusterBytes, diskBytes - start);
        command = `discard ${start} ${length}`;
        current.fill(0, start, start + length);
      } else {
        command = `write -c -P ${step.pattern} ${(step.cluster % testCase.clusters) * clusterBytes} ${clusterBytes}`;
      }
      const result = await runTool('qemu-io', ['-f', 'qcow2', '-c', command, image], { okCodes: [0, 1] });
      const output = result.stdout + result.stderr;
      if (step.kind === 'compressed') {
        const start = (step.cluster % testCase.clusters) * clusterBytes;
        if (/^wrote /m.test(output)) current.fill(step.pattern, start, start + clusterBytes);
        else expect(output, `${context}: qemu-io ${command}`).toMatch(/write failed/);
      } else expect(output, `${context}: qemu-io ${command}`).not.toMatch(/error|failed/i);
    } else if (step.kind === 'take') {
      if (snapshots.size >= 6) continue;
      const name = `s${++named}`;
      await qemuImg(['snapshot', '-c', name, image]);
      snapshots.set(name, current.slice());
    } else if (step.kind === 'apply') {
      const name = pick(step.pick);
      if (name === undefined) continue;
      await qemuImg(['snapshot', '-a', name, image]);
      current = (snapshots.get(name) ?? current).slice();
    } else {
      const name = pick(step.pick);
      if (name === undefined) continue;
      await qemuImg(['snapshot', '-d', name, image]);
      snapshots.delete(name);
    }
  }
  const sourceCheck = await qemuCheck(image);
  expect(sourceCheck.code, `${context}: the source: ${sourceCheck.output}`).toBe(0);
  const listing = snapshotRows((await qemuImg(['snapshot', '-l', image])).stdout);
  const states: [string | undefined, Uint8Array][] = [[undefined, current], ...snapshots];

  async function expectStates(output: string, encrypted: boolean, stage: string): Promise<void> {
    const check = encrypted ? await checkWithKey(output) : await qemuCheck(output);
    expect(check.code, `${context}: ${stage}: qemu-img check: ${check.output}`).toBe(0);
    if (encrypted) expect(check.report?.['compressed-clusters'] ?? 0, `${context}: ${stage}: compressed clusters in an encrypted image`).toBe(0);
    const rows = encrypted ? snapshotRows((await runTool('qemu-img', ['snapshot', ...secret('sec0', PASS), '--image-opts', '-l', imageOpts(output, 'sec0')])).stdout) : snapshotRows((await qemuImg(['snapshot', '-l', output])).stdout);
    expect(rows, `${context}: ${stage}: the snapshot listing`).toEqual(listing);
    for (const [name, bytes] of states) {
      const read = encrypted ? await rawOfEncrypted(output, PASS, name) : await rawOf(output, { snapshot: name });
      expect(firstDifference(read, bytes), `${context}: ${stage}: first wrong byte of ${name === undefined ? 'the current state' : `snapshot ${name}`}`).toBe(-1);
    }
  }

  const encrypted = path.join(runFolder, 'encrypted.qcow2');
  rewriteImage({ source: image, target: encrypted, compression: testCase.encryptPolicy, encryption: { kind: 'luks', passphrase: PASS, cipher: testCase.cipher, ...QUICK_KEY } });
  await expectStates(encrypted, true, `encrypt (${testCase.encryptPolicy})`);
  if (testCase.compactPolicy !== null) {
    rewriteImage({ source: encrypted, compression: testCase.compactPolicy, passphrase: PASS });
    await expectStates(encrypted, true, `compact of the encrypted image (${testCase.compactPolicy})`);
  }
  const decrypted = path.join(runFolder, 'decrypted.qcow2');
  rewriteImage({ source: encrypted, target: decrypted, compression: testCase.decryptPolicy, passphrase: PASS, encryption: { kind: 'none' } });
  await expectStates(decrypted, false, `decrypt (${testCase.decryptPolicy})`);
  fs.rmSync(runFolder, { recursive: true, force: true });
}

describe('encrypt, compact and decrypt, property', () => {
  it(`any history: encrypted, compacted and decrypted, clean with every state as the model says (${RUNS} runs, seed ${SEED})`, { timeout: 900_000 }, async () => {
    await fc.assert(fc.asyncProperty(caseArbitrary, checkCase), { seed: SEED, numRuns: RUNS });
  });
});
