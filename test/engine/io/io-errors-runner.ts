/**
 * A full disk (ENOSPC) or a failing one (EIO) at every write, truncate and flush of an operation
 * from the crash table (crash/harness.ts): the operation runs once on a FaultFile to log its
 * calls, then once per call with that call failing (FailingFile). Each run must
 *  1. fail with the typed error (NO_SPACE, IO_ERROR) and a message that says what happened;
 *  2. write nothing after the failure, not even when the image is closed (fail-stop-file.ts);
 *  3. leave a file that the walk and `qemu-img check` find free of corruption (leaks allowed),
 *     whose guest data keep the operation's contract (before or after; per cluster for guest
 *     writes) — both as written and, after a failed flush, without the writes since the last
 *     good flush (Linux may drop those pages after a failed fsync);
 *  4. for a sample, be repaired clean by `check --repair leaks` with the guest data unchanged.
 */
import * as fs from 'node:fs';
import { createHash } from 'node:crypto';
import { checkImage } from '../../../src/shared/qcow2/check/check.ts';
import { Qcow2Error, type ErrorCode } from '../../../src/shared/qcow2/errors.ts';
import { INCOMPAT_DIRTY } from '../../../src/shared/qcow2/format/limits.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { CrashState, crashState, FaultFile, type FileEvent } from '../../helpers/fault-file.ts';
import { FailingFile, type FailureCode, type FailurePlan } from '../../helpers/failing-file.ts';
import { firstDifference, inBatches, tempDir } from '../../helpers/qemu.ts';
import { contractViolation, readGuestState, type GuestState } from '../crash/guest-state.ts';
import type { ImageOperation } from '../crash/harness.ts';
import { referenceRun } from '../crash/reference-run.ts';
import { walkImage } from '../crash/image-walk.ts';
import { isClean, qemuVerdict } from '../crash/qemu-verdict.ts';

export interface IoErrorSettings {
  full: boolean;
  /** Failing runs per operation at most: a long log is sampled evenly, its first and last calls always tried. */
  maxRuns: number;
  /** After the first few, every n-th distinct resulting file goes to qemu-img check (the walk sees every one). */
  qemuCheckEvery: number;
  /** Every n-th file that qemu-img found something to repair in is repaired and checked again. */
  repairEvery: number;
}

export const ioErrorSettings: IoErrorSettings =
  process.env.IO_ERRORS_FULL === '1'
    ? { full: true, maxRuns: Number.POSITIVE_INFINITY, qemuCheckEvery: 1, repairEvery: 1 }
    : { full: false, maxRuns: 20, qemuCheckEvery: 4, repairEvery: 6 };

export interface IoErrorReport {
  name: string;
  events: number;
  runs: number;
  distinct: number;
  qemuChecks: number;
  repairs: number;
  failures: string[];
}

const MAX_FAILURES = 12;

export const EXPECTED_CODE: Record<FailureCode, ErrorCode> = { ENOSPC: 'NO_SPACE', EIO: 'IO_ERROR' };
export const EXPECTED_WORDS: Record<FailureCode, RegExp> = { ENOSPC: /the disk is full; free some space/, EIO: /input\/output error/ };

/** The failures worth trying at each logged call: EIO and ENOSPC, and a short write where a write grows the file. */
export function failurePlans(log: readonly FileEvent[]): FailurePlan[] {
  const plans: FailurePlan[] = [];
  let size = -1;
  log.forEach((event, index) => {
    plans.push({ event: index, code: 'EIO' }, { event: index, code: 'ENOSPC' });
    if (event.kind === 'write' && size >= 0 && event.position + event.bytes.length > size && event.bytes.length >= 1024) {
      const below = Math.max(0, size - event.position);
      plans.push({ event: index, code: 'ENOSPC', partialBytes: below + Math.floor((event.bytes.length - below) / 2) });
    }
    if (event.kind === 'write') size = Math.max(size, event.position + event.bytes.length);
    else if (event.kind === 'truncate') size = event.size;
  });
  return plans;
}

/** At most `limit` plans: the first and last calls' plans, and an even spread of the rest. */
export function samplePlans(plans: FailurePlan[], limit: number): FailurePlan[] {
  if (plans.length <= limit) return plans;
  const lastEvent = plans.at(-1)?.event ?? 0;
  const edge = (plan: FailurePlan): boolean => plan.event < 2 || plan.event > lastEvent - 2;
  const edges = plans.filter(edge);
  const middle = plans.filter((plan) => !edge(plan));
  const room = Math.max(1, limit - edges.length);
  const stride = middle.length / room;
  const picked = Array.from({ length: Math.min(room, middle.length) }, (_, index) => middle[Math.floor(index * stride)]).filter((plan): plan is FailurePlan => plan !== undefined);
  return [...edges, ...picked].sort((a, b) => a.event - b.event);
}

function describePlan(log: readonly FileEvent[], plan: FailurePlan): string {
  const event = log[plan.event];
  const what = event === undefined ? '?' : event.kind === 'write' ? `write of ${event.bytes.length} bytes at ${event.position}` : event.kind === 'truncate' ? `truncate to ${event.size}` : 'flush';
  return `${plan.code}${plan.partialBytes !== undefined ? ` after ${plan.partialBytes} bytes` : ''} at call ${plan.event + 1}/${log.length} (${what})`;
}

/** `check --repair leaks` on a copy; the repaired bytes. */
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

function isDirty(bytes: Uint8Array): boolean {
  const header = new DataView(bytes.buffer, bytes.byteOffset);
  return header.getUint32(4) === 3 && (header.getBigUint64(72) & INCOMPAT_DIRTY) !== 0n;
}

function sameGuestData(a: GuestState, b: GuestState): boolean {
  return firstDifference(a.current, b.current) === -1 && a.snapshots.length === b.snapshots.length && a.snapshots.every((snapshot, index) => firstDifference(snapshot.data, b.snapshots[index]?.data ?? new Uint8Array(0)) === -1);
}

export async function runIoErrorCase(operation: ImageOperation, settings: IoErrorSettings = ioErrorSettings): Promise<IoErrorReport> {
  const folder = tempDir();
  const report: IoErrorReport = { name: operation.name, events: 0, runs: 0, distinct: 0, qemuChecks: 0, repairs: 0, failures: [] };
  const fail = (message: string): void => {
    if (report.failures.length < MAX_FAILURES) report.failures.push(message);
  };
  try {
    const imagePath = folder.file('image.qcow2');
    const { initial, before, after, log, granuleBytes } = await referenceRun(operation, imagePath);
    report.events = log.length;
    const { passphrase } = operation;

    const seen = new Set<string>();
    const qemuJobs: (() => Promise<void>)[] = [];
    let repairCandidates = 0;
    for (const plan of samplePlans(failurePlans(log), settings.maxRuns)) {
      report.runs++;
      const where = describePlan(log, plan);
      const inner = new FaultFile(imagePath, initial);
      const failing = new FailingFile(inner, plan);
      let image: Qcow2Image | null = null;
      let error: unknown = null;
      try {
        image = Qcow2Image.openFile(failing, { ...operation.open, passphrase });
        operation.run(image);
        image.close();
      } catch (caught) {
        error = caught;
        try {
          image?.close();
        } catch (closeError) {
          fail(`${where}: closing the image after the failure threw ${(closeError as Error).message}`);
        }
      }
      if (failing.thrown === null) {
        fail(`${where}: the planned failure never happened (the operation is not deterministic?)`);
        continue;
      }
      if (!(error instanceof Qcow2Error)) fail(`${where}: expected a Qcow2Error, got ${String(error)}`);
      else {
        if (error.code !== EXPECTED_CODE[plan.code]) fail(`${where}: code ${error.code}, expected ${EXPECTED_CODE[plan.code]} (${error.message})`);
        if (!EXPECTED_WORDS[plan.code].test(error.message)) fail(`${where}: the message does not say what happened: ${error.message}`);
      }
      if (failing.callsAfterFailure > 0) fail(`${where}: ${failing.callsAfterFailure} more writes or flushes after the failure`);

      const states: { label: string; bytes: Uint8Array }[] = [{ label: 'as written', bytes: inner.contents() }];
      if (log[plan.event]?.kind === 'flush') {
        states.push({ label: 'unflushed writes dropped', bytes: crashState(imagePath, initial, inner.log, { cut: inner.log.length, pattern: { kind: 'lose-all' } }).bytes() });
      }
      for (const state of states) {
        const signature = createHash('sha1').update(state.bytes).digest('hex');
        if (seen.has(signature)) continue;
        seen.add(signature);
        report.distinct++;
        const label = `${where}, ${state.label}`;
        let observed: GuestState | null = null;
        try {
          const file = new CrashState(imagePath, state.bytes, []);
          for (const finding of walkImage(file).harmful) fail(`${label}: ${finding.kind}: ${finding.message}`);
          observed = readGuestState(file, passphrase);
          const violation = contractViolation(operation.contract, granuleBytes, before, after, observed);
          if (violation !== null) fail(`${label}: ${operation.contract} broken: ${violation}`);
        } catch (readError) {
          fail(`${label}: the image cannot be read: ${(readError as Error).message}`);
        }
        if (report.distinct > 6 && report.distinct % settings.qemuCheckEvery !== 0) continue;
        const statePath = folder.file(`state-${report.distinct}.qcow2`);
        const expected = observed;
        qemuJobs.push(async () => {
          fs.writeFileSync(statePath, state.bytes);
          try {
            const verdict = await qemuVerdict(statePath, passphrase);
            report.qemuChecks++;
            for (const message of verdict.harmful) fail(`${label}: qemu-img check: ${message}`);
            if (verdict.harmful.length > 0 || expected === null || (isClean(verdict) && !isDirty(state.bytes)) || repairCandidates++ % settings.repairEvery !== 0) return;
            report.repairs++;
            const repaired = repairLeaks(statePath, state.bytes, passphrase);
            fs.writeFileSync(statePath, repaired);
            const again = await qemuVerdict(statePath, passphrase);
            if (!isClean(again)) fail(`${label}: after check --repair leaks qemu-img check is not clean:\n${again.output}`);
            if (!sameGuestData(readGuestState(new CrashState(statePath, repaired, []), passphrase), expected)) fail(`${label}: check --repair leaks changed the guest data`);
          } finally {
            fs.rmSync(statePath, { force: true });
          }
        });
      }
    }
    await inBatches(qemuJobs, 4);
    return report;
  } finally {
    folder.cleanup();
  }
}

export function summary(report: IoErrorReport): string {
  return `io-errors: ${report.name}: ${report.runs} failing runs over ${report.events} calls (${report.distinct} distinct files, ${report.qemuChecks} qemu-img checks, ${report.repairs} repairs checked)`;
}
