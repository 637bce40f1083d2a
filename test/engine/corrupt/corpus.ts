/**
 * Builds the damaged-image corpus and runs every case through the fuzz harness (crash, hang and
 * memory limits per target), with the qemu-img oracles and the change targets, and counts.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { inBatches } from '../../helpers/qemu.ts';
import { DEFAULT_HARNESS, FuzzHarness } from '../fuzz/harness.ts';
import { describeFinding, isFinding } from '../fuzz/oracle.ts';
import type { TargetOutcome } from '../fuzz/protocol.ts';
import { BACKING_NAME, BASES, buildBases } from './bases.ts';
import { CASES } from './recipes.ts';

/** Reads, the qemu-img oracles, then every change on its own copy. */
export const CORPUS_TARGETS = [
  'info',
  'read-snapshots',
  'check',
  'map',
  'ui-snapshot-tree',
  'qemu-agree',
  'qemu-repair',
  'change-snapshot-create',
  'change-snapshot-apply',
  'change-snapshot-delete',
  'change-snapshot-rename',
  'change-guest-write',
  'change-guest-write-middle',
  'change-compact',
];

export interface CaseResult {
  name: string;
  outcomes: TargetOutcome[];
}

export interface CorpusTally {
  cases: number;
  crashes: string[];
  hangs: string[];
  dataDisagreements: string[];
  /** Case names. */
  weakerRepairs: string[];
  /** The same, with what each repair left. */
  weakerRepairDetails: string[];
  changesThatWrote: string[];
}

const named = (outcome: TargetOutcome, name: string): boolean => outcome.status === 'raw' && outcome.code === name;

export function tally(results: CaseResult[]): CorpusTally {
  const result: CorpusTally = { cases: results.length, crashes: [], hangs: [], dataDisagreements: [], weakerRepairs: [], weakerRepairDetails: [], changesThatWrote: [] };
  for (const { name, outcomes } of results) {
    for (const outcome of outcomes) {
      const line = `${name} ${describeFinding(outcome)}`;
      if (named(outcome, 'DataDisagreement')) result.dataDisagreements.push(line);
      else if (named(outcome, 'RepairWeaker')) {
        result.weakerRepairs.push(name);
        result.weakerRepairDetails.push(line);
      }
      else if (named(outcome, 'ChangeWrote')) result.changesThatWrote.push(line);
      else if (outcome.status === 'hang') result.hangs.push(line);
      else if (isFinding(outcome)) result.crashes.push(line);
    }
  }
  return result;
}

export function formatTally(result: CorpusTally): string {
  return (
    `damaged-image corpus: ${result.cases} cases, ${result.crashes.length} crashes, ${result.hangs.length} hangs, ` +
    `${result.dataDisagreements.length} data disagreements with qemu-img, ${result.weakerRepairs.length} repairs weaker than qemu-img's, ` +
    `${result.changesThatWrote.length} failed changes that wrote`
  );
}

/** Builds the bases, damages a copy per case, and runs the targets on every case (`only`: case names to run). */
export async function runCorpus(folder: string, only?: (name: string) => boolean, targets = CORPUS_TARGETS): Promise<CaseResult[]> {
  const baseFolder = path.join(folder, 'bases');
  fs.mkdirSync(baseFolder, { recursive: true });
  const bases = await buildBases(baseFolder);
  const companions = [{ name: BACKING_NAME, bytes: new Uint8Array(fs.readFileSync(path.join(baseFolder, BACKING_NAME))) }];
  const caseFolder = path.join(folder, 'cases');
  fs.mkdirSync(caseFolder, { recursive: true });
  const harness = new FuzzHarness({ ...DEFAULT_HARNESS, folder: path.join(folder, 'harness'), companions });
  try {
    const selected = CASES.filter((entry) => only === undefined || only(entry.name));
    return await inBatches(
      selected.map((entry) => async () => {
        const base = bases.get(entry.base);
        if (base === undefined) throw new Error(`${entry.name}: no base named ${entry.base} (bases: ${BASES.map((b) => b.name).join(', ')})`);
        const file = path.join(caseFolder, `${entry.name}.qcow2`);
        fs.copyFileSync(base, file);
        entry.damage(file);
        const bytes = new Uint8Array(fs.readFileSync(file));
        fs.rmSync(file);
        const caseTargets = entry.slowQemuRepair === true ? targets.filter((target) => target !== 'qemu-repair') : targets;
        return { name: entry.name, outcomes: await harness.run(bytes, caseTargets) };
      }),
      DEFAULT_HARNESS.workers,
    );
  } finally {
    await harness.close();
  }
}
