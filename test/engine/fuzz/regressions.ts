/**
 * Cases that once found a bug, kept as fixtures in regressions/: the recipe (seed name, the rng
 * seed that made it, the concrete patches) as JSON, and the image itself when it is small.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { applyMutations, type Mutation } from './patches.ts';
import type { TargetOutcome } from './protocol.ts';

export const REGRESSIONS_FOLDER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'regressions');
/** Images under this size are committed beside their recipe. */
const MAX_IMAGE_FIXTURE = 64 * 1024;

export interface FuzzCase {
  seed: string;
  /** The generator's rng seed (null for systematic cases), to regenerate the case if wanted. */
  rngSeed: number | null;
  mutations: Mutation[];
}

export interface RegressionFixture extends FuzzCase {
  /** What the case found when it was saved. */
  found: { target: string; outcome: string; message: string }[];
  /** A committed copy of the mutated image, beside the JSON, when it is small. */
  image?: string;
}

export function caseId(fuzzCase: FuzzCase): string {
  const digest = createHash('sha256').update(JSON.stringify([fuzzCase.seed, fuzzCase.mutations])).digest('hex');
  return `${fuzzCase.seed}-${digest.slice(0, 12)}`;
}

/** Saves a failing case (once); returns the fixture's file name. */
export function saveRegression(fuzzCase: FuzzCase, image: Uint8Array, findings: { target: string; outcome: string; message: string }[], folder = REGRESSIONS_FOLDER): string {
  fs.mkdirSync(folder, { recursive: true });
  const id = caseId(fuzzCase);
  const jsonPath = path.join(folder, `${id}.json`);
  if (fs.existsSync(jsonPath)) return path.basename(jsonPath);
  const fixture: RegressionFixture = { ...fuzzCase, found: findings };
  if (image.length < MAX_IMAGE_FIXTURE) {
    fixture.image = `${id}.qcow2`;
    fs.writeFileSync(path.join(folder, fixture.image), image);
  }
  fs.writeFileSync(jsonPath, JSON.stringify(fixture, null, 1) + '\n');
  return path.basename(jsonPath);
}

export function loadRegressions(folder = REGRESSIONS_FOLDER): { name: string; fixture: RegressionFixture }[] {
  if (!fs.existsSync(folder)) return [];
  return fs
    .readdirSync(folder)
    .filter((name) => name.endsWith('.json'))
    .sort()
    .map((name) => ({ name, fixture: JSON.parse(fs.readFileSync(path.join(folder, name), 'utf8')) as RegressionFixture }));
}

/** The fixture's image: the committed copy if there is one, else the recipe applied to the seed. */
export function regressionImage(fixture: RegressionFixture, seedBytes: () => Uint8Array, folder = REGRESSIONS_FOLDER): Uint8Array {
  if (fixture.image !== undefined) return new Uint8Array(fs.readFileSync(path.join(folder, fixture.image)));
  return applyMutations(seedBytes(), fixture.mutations);
}

export function summarizeFindings(outcomes: TargetOutcome[], key: (outcome: TargetOutcome) => string): { target: string; outcome: string; message: string }[] {
  return outcomes.map((outcome) => ({ target: outcome.target, outcome: key(outcome), message: (outcome.message ?? '').slice(0, 300) }));
}
