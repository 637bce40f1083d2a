/**
 * Runs a whole-file operation (harness.ts `fileOperations`) on a FaultFileSystem and judges it:
 *  - the order the atomic helper promises: every write of the new file, then its flush, then the
 *    rename onto the target, then a sync of the target's folder;
 *  - every power cut of the log (keep-all, lose-all, seeded random): the target holds what was
 *    there before (or nothing) or the complete new file; before the rename onto the target, only
 *    what was there before; once the operation has returned, only the new file;
 *  - the new file is an image qemu-img check finds clean (with its passphrase, if it is encrypted)
 *    and passes the operation's own judge.
 */
import * as fs from 'node:fs';
import { FaultFileSystem, folderOf, type FileSystemEvent, type LossPattern } from '../../helpers/fault-file.ts';
import { firstDifference, tempDir } from '../../helpers/qemu.ts';
import type { FileOperation } from './harness.ts';
import { isClean, qemuVerdict } from './qemu-verdict.ts';
import { crashSettings, type CrashSettings } from './runner.ts';

export interface FileCrashReport {
  name: string;
  events: number;
  states: number;
  failures: string[];
  log: FileSystemEvent[];
}

/** What is wrong with the order of `log` for an atomic replacement of `target` (empty: nothing). */
export function atomicOrderProblems(log: readonly FileSystemEvent[], target: string): string[] {
  const renameAt = log.findIndex((event) => event.kind === 'rename' && event.to === target);
  if (renameAt === -1) return [`nothing was renamed onto ${target}`];
  const rename = log[renameAt];
  if (rename?.kind !== 'rename') return ['unreachable'];
  const created = log.find((event) => event.kind === 'create' && event.path === rename.from);
  if (created?.kind !== 'create') return [`${rename.from} was renamed onto the target but never created here`];
  const inode = created.inode;
  const problems: string[] = [];
  let lastChange = -1;
  let lastFlush = -1;
  log.forEach((event, index) => {
    if ((event.kind === 'write' || event.kind === 'truncate') && event.inode === inode) lastChange = index;
    if (event.kind === 'flush' && event.inode === inode && index < renameAt) lastFlush = index;
  });
  if (lastChange > renameAt) problems.push(`the new file is written (event ${lastChange}) after the rename (event ${renameAt})`);
  if (lastFlush === -1 || lastFlush < lastChange) problems.push(`the new file is not flushed after its last write (event ${lastChange}) and before the rename (event ${renameAt})`);
  const syncAt = log.findIndex((event, index) => index > renameAt && event.kind === 'sync-folder' && event.path === folderOf(target));
  if (syncAt === -1) problems.push(`the folder ${folderOf(target)} is not synced after the rename`);
  return problems;
}

function patternsFor(cut: number, settings: CrashSettings): LossPattern[] {
  const patterns: LossPattern[] = [{ kind: 'keep-all' }, { kind: 'lose-all' }];
  for (let subset = 0; subset < settings.randomSubsets(0); subset++) patterns.push({ kind: 'random', seed: cut * 7919 + subset });
  return patterns;
}

function describe(pattern: LossPattern): string {
  return pattern.kind === 'random' ? `random seed ${pattern.seed}` : pattern.kind;
}

export async function runFileCrashCase(operation: FileOperation, settings: CrashSettings = crashSettings): Promise<FileCrashReport> {
  const folder = tempDir();
  try {
    const before = await operation.setup(folder);
    const fileSystem = new FaultFileSystem(before === null ? {} : { [operation.target]: before });
    operation.run(fileSystem, folder);
    const log = fileSystem.log;
    const report: FileCrashReport = { name: operation.name, events: log.length, states: 0, failures: [], log };
    const fail = (message: string): void => {
      if (report.failures.length < 12) report.failures.push(message);
    };
    const after = fileSystem.files().get(operation.target);
    if (after === undefined) {
      fail(`the operation left nothing at ${operation.target}`);
      return report;
    }
    for (const problem of atomicOrderProblems(log, operation.target)) fail(`order: ${problem}`);

    const finishedPath = folder.file('finished.qcow2');
    fs.writeFileSync(finishedPath, after);
    const verdict = await qemuVerdict(finishedPath, operation.passphrase);
    if (!isClean(verdict)) fail(`the new file is not clean by qemu-img check:\n${verdict.output}`);
    for (const problem of (await operation.judgeAfter?.(finishedPath, folder)) ?? []) fail(`the new file: ${problem}`);

    const renameAt = log.findIndex((event) => event.kind === 'rename' && event.to === operation.target);

    for (let cut = 0; cut <= log.length; cut++) {
      for (const pattern of patternsFor(cut, settings)) {
        report.states++;
        const seen = fileSystem.crash(cut, pattern).get(operation.target);
        const isBefore = before === null ? seen === undefined : seen !== undefined && firstDifference(seen, before) === -1;
        const isAfter = seen !== undefined && firstDifference(seen, after) === -1;
        const where = `cut after event ${cut}/${log.length} (${describe(pattern)})`;
        if (cut === log.length && !isAfter) fail(`${where}: the operation returned, but after a power cut the target is ${seen === undefined ? 'missing' : `not the new file (${seen.length} bytes)`}`);
        else if (cut <= renameAt && !isBefore) fail(`${where}: the cut comes before the rename (event ${renameAt}), but the target is not what was there before (${seen === undefined ? 'missing' : `${seen.length} bytes`})`);
        else if (!isBefore && !isAfter) fail(`${where}: the target is neither the old file nor the complete new one (${seen === undefined ? 'missing' : `${seen.length} bytes`})`);
      }
    }
    return report;
  } finally {
    folder.cleanup();
  }
}

export function fileSummary(report: FileCrashReport): string {
  return `crash: ${report.name}: ${report.states} crash states tried (${report.events} logged file-system events)`;
}
