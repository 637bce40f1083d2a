/**
 * Runs one crash-table entry: the operation once on a FaultFile to get its log of writes and
 * flushes, then every power cut that log allows (crashPoints), each judged by
 *  1. the walk (image-walk.ts): no refcount below its references, no COPIED flag on a shared cluster;
 *  2. the guest data, read through the engine, against the operation's contract;
 *  3. `qemu-img check` (every distinct crash image), classified as in qemu-verdict.ts;
 *  4. for a sample, the guest data as qemu-img reads it (`convert`, `-l snapshot.name=…`);
 *  5. where qemu-img finds something to repair (leaks, a missing COPIED flag) or the dirty bit is
 *     set: `cowbell check --repair leaks` (bin/cowbell for the first such state of a case, the
 *     same engine call in process for the rest), after which qemu-img check is clean, the image
 *     opens writable and the guest data has not changed.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checkImage } from '../../../src/shared/qcow2/check/check.ts';
import { INCOMPAT_DIRTY } from '../../../src/shared/qcow2/format/limits.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { CrashState, crashPoints, crashState, describeCrashPoint, FaultFile } from '../../helpers/fault-file.ts';
import { rawOfEncrypted } from '../../helpers/encrypted-images.ts';
import { firstDifference, inBatches, rawOf, tempDir } from '../../helpers/qemu.ts';
import { contractViolation, readGuestState, statesEqual, type GuestState } from './guest-state.ts';
import type { ImageOperation } from './harness.ts';
import { referenceRun } from './reference-run.ts';
import { walkImage } from './image-walk.ts';
import { isClean, qemuVerdict } from './qemu-verdict.ts';

export interface CrashSettings {
  full: boolean;
  /** Seeded random loss patterns per cut point, besides keep-all and lose-all, for a log of `changes` writes. */
  randomSubsets: (changes: number) => number;
  /** Seeded torn patterns (writes split into 512-byte sectors, each kept or lost) per cut point. */
  tornSubsets: (changes: number) => number;
  /** Every n-th distinct crash image goes to qemu-img check (the walk sees every one). */
  qemuCheckEvery: number;
  /** Every n-th distinct crash image is also read by qemu-img convert. */
  qemuDataEvery: number;
  /** Every n-th crash image qemu-img checked and found something to repair is repaired and checked again. */
  repairEvery: number;
}

export const crashSettings: CrashSettings =
  process.env.CRASH_FULL === '1'
    ? { full: true, randomSubsets: () => 24, tornSubsets: () => 8, qemuCheckEvery: 1, qemuDataEvery: 3, repairEvery: 1 }
    : // Long logs get fewer random patterns per cut; every cut still gets keep-all and lose-all.
      {
        full: false,
        randomSubsets: (changes) => Math.max(1, Math.min(6, Math.floor(400 / Math.max(1, changes)))),
        tornSubsets: (changes) => Math.min(2, Math.floor(150 / Math.max(1, changes))),
        qemuCheckEvery: 3,
        qemuDataEvery: 24,
        repairEvery: 4,
      };

export interface CrashReport {
  name: string;
  events: number;
  states: number;
  distinct: number;
  qemuChecks: number;
  qemuDataSamples: number;
  repairs: number;
  failures: string[];
}

const MAX_FAILURES = 12;

function seedOf(text: string): number {
  let hash = 2166136261;
  for (let index = 0; index < text.length; index++) hash = Math.imul(hash ^ text.charCodeAt(index), 16777619) >>> 0;
  return hash;
}

/** The guest state as qemu-img reads it, compared with what the engine read from the same bytes. */
async function qemuDataMismatch(imagePath: string, expected: GuestState, passphrase: string | undefined): Promise<string | null> {
  const read = (snapshot?: string): Promise<Uint8Array> => (passphrase === undefined ? rawOf(imagePath, snapshot === undefined ? {} : { snapshot }) : rawOfEncrypted(imagePath, passphrase, snapshot));
  const current = await read();
  const at = firstDifference(current, expected.current);
  if (at !== -1) return `qemu-img reads the current disk differently from the engine at byte ${at}`;
  for (const snapshot of expected.snapshots) {
    // qemu-img reads a snapshot at the current disk's size (past the snapshot's own end: zeros, or a
    // backing file): the bytes both have are the ones to compare.
    const data = await read(snapshot.name);
    const length = Math.min(data.length, snapshot.data.length);
    const differs = firstDifference(data.subarray(0, length), snapshot.data.subarray(0, length));
    if (differs !== -1) return `qemu-img reads snapshot ${snapshot.name} differently from the engine at byte ${differs}`;
  }
  return null;
}

function isDirty(bytes: Uint8Array): boolean {
  const version = new DataView(bytes.buffer, bytes.byteOffset).getUint32(4);
  return version === 3 && (new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(72) & INCOMPAT_DIRTY) !== 0n;
}

const cowbell = fileURLToPath(new URL('../../../bin/cowbell', import.meta.url));

/** The real command line, `cowbell check -r leaks IMAGE`, on the crash image at `imagePath`: its exit code. */
function repairLeaksWithCli(imagePath: string): Promise<number> {
  return new Promise((resolve) => {
    execFile(process.execPath, [cowbell, 'check', '-r', 'leaks', imagePath], (error) => {
      const code = (error as { code?: unknown } | null)?.code;
      resolve(error === null ? 0 : typeof code === 'number' ? code : -1);
    });
  });
}

/** `cowbell check --repair leaks` in process (the same engine call the command makes) on a copy of the crash image; returns the repaired bytes. */
function repairLeaks(imagePath: string, bytes: Uint8Array, passphrase: string | undefined): Uint8Array {
  const file = new FaultFile(imagePath, bytes);
  const image = Qcow2Image.openFile(file, { openBacking: false, allowDirtyForRepair: true, passphrase });
  try {
    checkImage(image, { repair: 'leaks' });
  } finally {
    image.close();
  }
  return file.contents();
}

/** Why the repaired image is not what a repair must leave, or null. */
async function repairedProblem(imagePath: string, repaired: Uint8Array, expected: GuestState, passphrase: string | undefined): Promise<string | null> {
  fs.writeFileSync(imagePath, repaired);
  const verdict = await qemuVerdict(imagePath, passphrase);
  if (!isClean(verdict)) return `after check --repair leaks, qemu-img check is not clean:\n${verdict.output}`;
  const reopened = Qcow2Image.openFile(new FaultFile(imagePath, repaired), { passphrase });
  const reason = reopened.readOnly ? reopened.readOnlyReason : null;
  reopened.close();
  if (reason !== null) return `after check --repair leaks the image still opens read-only: ${reason}`;
  const data = readGuestState(new CrashState(imagePath, repaired, []), passphrase);
  if (firstDifference(data.current, expected.current) !== -1 || data.snapshots.some((snapshot, index) => firstDifference(snapshot.data, expected.snapshots[index]?.data ?? new Uint8Array(0)) !== -1)) {
    return 'check --repair leaks changed the guest data';
  }
  return null;
}

export async function runCrashCase(operation: ImageOperation, settings: CrashSettings = crashSettings): Promise<CrashReport> {
  const folder = tempDir();
  const report: CrashReport = { name: operation.name, events: 0, states: 0, distinct: 0, qemuChecks: 0, qemuDataSamples: 0, repairs: 0, failures: [] };
  const fail = (message: string): void => {
    if (report.failures.length < MAX_FAILURES) report.failures.push(message);
  };
  try {
    const imagePath = folder.file('image.qcow2');
    const { initial, final, before, after, log, granuleBytes } = await referenceRun(operation, imagePath);
    report.events = log.length;
    const changes = operation.changesGuestState ?? true;
    if (statesEqual(before, after) === changes) fail(changes ? 'the operation changed nothing the guest sees: the case tests nothing' : 'the operation changed what the guest sees');

    // The finished operation: clean by qemu-img's standards, and read alike by qemu-img.
    const finishedPath = folder.file('finished.qcow2');
    fs.writeFileSync(finishedPath, final);
    const { passphrase } = operation;
    const finished = await qemuVerdict(finishedPath, passphrase);
    if (!isClean(finished)) fail(`after the whole operation qemu-img check is not clean:\n${finished.output}`);
    const finishedData = await qemuDataMismatch(finishedPath, after, passphrase);
    if (finishedData !== null) fail(`after the whole operation: ${finishedData}`);

    const seen = new Set<string>();
    let repairCandidates = 0;
    const qemuJobs: (() => Promise<void>)[] = [];
    const writes = log.filter((event) => event.kind !== 'flush').length;
    for (const point of crashPoints(log, settings.randomSubsets(writes), seedOf(operation.name), settings.tornSubsets(writes))) {
      report.states++;
      const state = crashState(imagePath, initial, log, point);
      const signature = state.signature();
      if (seen.has(signature)) continue;
      seen.add(signature);
      report.distinct++;
      const where = describeCrashPoint(log, point);

      let observed: GuestState | null = null;
      try {
        const walk = walkImage(state);
        for (const finding of walk.harmful) fail(`${where}: ${finding.kind}: ${finding.message}`);
        observed = readGuestState(state, passphrase);
        // A torn write breaks an in-place cluster write into sectors, as it would on a raw disk.
        const granule = point.pattern.kind === 'torn' ? Math.min(512, granuleBytes) : granuleBytes;
        const violation = contractViolation(operation.contract, granule, before, after, observed);
        if (violation !== null) fail(`${where}: ${operation.contract} broken: ${violation}`);
      } catch (error) {
        fail(`${where}: the crash image cannot be read: ${(error as Error).message}`);
      }

      // Small cases go to qemu-img whole; long ones are sampled (the walk sees every state).
      if (report.distinct > 16 && report.distinct % settings.qemuCheckEvery !== 0) continue;
      const sampleData = observed !== null && report.distinct % settings.qemuDataEvery === 1;
      const expected = observed;
      const statePath = folder.file(`state-${report.distinct}.qcow2`);
      qemuJobs.push(async () => {
        fs.writeFileSync(statePath, state.bytes());
        try {
          const verdict = await qemuVerdict(statePath, passphrase);
          report.qemuChecks++;
          for (const message of verdict.harmful) fail(`${where}: qemu-img check: ${message}`);
          if (sampleData && expected !== null) {
            report.qemuDataSamples++;
            const mismatch = await qemuDataMismatch(statePath, expected, passphrase);
            if (mismatch !== null) fail(`${where}: ${mismatch}`);
          }
          const bytes = state.bytes();
          if (verdict.harmful.length === 0 && expected !== null && (!isClean(verdict) || isDirty(bytes)) && repairCandidates++ % settings.repairEvery === 0) {
            report.repairs++;
            let repaired: Uint8Array;
            if (report.repairs === 1) {
              // The first repair of each case through bin/cowbell itself, the rest in process.
              fs.writeFileSync(statePath, bytes);
              const code = await repairLeaksWithCli(statePath);
              if (code !== 0) fail(`${where}: cowbell check -r leaks exited with ${code}`);
              repaired = new Uint8Array(fs.readFileSync(statePath));
            } else repaired = repairLeaks(statePath, bytes, passphrase);
            const problem = await repairedProblem(statePath, repaired, expected, passphrase);
            if (problem !== null) fail(`${where}: ${problem}`);
          }
        } finally {
          fs.rmSync(statePath, { force: true });
        }
      });
    }
    await inBatches(qemuJobs, 4);
    return report;
  } finally {
    folder.cleanup();
  }
}

export function summary(report: CrashReport): string {
  return `crash: ${report.name}: ${report.states} crash states tried (${report.distinct} distinct images from ${report.events} logged events; ${report.qemuChecks} qemu-img checks, ${report.qemuDataSamples} qemu-img data reads, ${report.repairs} repairs checked)`;
}
