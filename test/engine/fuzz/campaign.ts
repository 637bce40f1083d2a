/**
 * A fuzz campaign: build the seeds, generate cases (systematic and seeded-random), run every
 * target on each through the harness, shrink and save what fails, and count every outcome.
 */
import { inBatches, tempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { DEFAULT_HARNESS, FuzzHarness, type HarnessOptions } from './harness.ts';
import { readLayout, type Layout } from './layout.ts';
import { applyMutations, generateMutations, systematicMutations } from './mutations.ts';
import { describeFinding, isFinding, outcomeKey } from './oracle.ts';
import type { TargetOutcome } from './protocol.ts';
import { caseId, saveRegression, summarizeFindings, type FuzzCase } from './regressions.ts';
import { buildSeed, SEED_RECIPES, type SeedImage } from './seeds.ts';
import { targetNames } from './targets.ts';

export interface CampaignOptions {
  /** Seeded-random cases. */
  cases: number;
  baseSeed: number;
  /** Systematic cases per seed (every header field value and truncation point): 'all', or a sample of this many. */
  systematic: 'all' | number;
  /** Save failing cases as regression fixtures. */
  save: boolean;
  harness?: Partial<Omit<HarnessOptions, 'folder' | 'companions'>>;
  log?: (line: string) => void;
}

export interface Finding {
  id: string;
  fuzzCase: FuzzCase;
  outcomes: TargetOutcome[];
  fixture: string | null;
}

export interface CampaignReport {
  cases: number;
  findings: Finding[];
  /** target -> outcome key (ok, CORRUPT, raw TypeError, hang, …) -> count */
  tally: Record<string, Record<string, number>>;
  /** target -> total and slowest CPU milliseconds, and the slowest case (a hang in the making shows here first) */
  timing: Record<string, { totalMs: number; maxMs: number; slowest: string }>;
  durationMs: number;
}

export interface SeedSet {
  seeds: Map<string, { image: SeedImage; layout: Layout; weight: number }>;
  companions: { name: string; bytes: Uint8Array }[];
}

export async function buildSeeds(folder: string, names = SEED_RECIPES.map((recipe) => recipe.name)): Promise<SeedSet> {
  const images = await inBatches(names.map((name) => () => buildSeed(folder, name)), 3);
  const seeds: SeedSet['seeds'] = new Map();
  const companions: SeedSet['companions'] = [];
  for (const image of images) {
    const weight = SEED_RECIPES.find((recipe) => recipe.name === image.name)?.weight ?? 1;
    seeds.set(image.name, { image, layout: readLayout(image.bytes), weight });
    companions.push(...image.companions);
  }
  return { seeds, companions };
}

/** The seed a random case uses, chosen by weight from its own rng stream. */
function chooseSeed(seeds: SeedSet['seeds'], rngSeed: number): string {
  const entries = [...seeds.entries()];
  const total = entries.reduce((sum, [, seed]) => sum + seed.weight, 0);
  let roll = new SeededRandom(rngSeed ^ 0x5eed5eed).next() * total;
  for (const [name, seed] of entries) {
    roll -= seed.weight;
    if (roll <= 0) return name;
  }
  return entries[entries.length - 1]?.[0] ?? '';
}

function caseSeed(baseSeed: number, index: number): number {
  return (Math.imul(baseSeed, 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
}

function sample<T>(items: T[], count: number, random: SeededRandom): T[] {
  if (count >= items.length) return items;
  const chosen = new Set<number>();
  while (chosen.size < count) chosen.add(random.int(0, items.length));
  return [...chosen].sort((a, b) => a - b).map((index) => items[index] as T);
}

export function generateCases(seeds: SeedSet['seeds'], options: Pick<CampaignOptions, 'cases' | 'baseSeed' | 'systematic'>): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const random = new SeededRandom(options.baseSeed);
  for (const [name, seed] of seeds) {
    const all = systematicMutations(seed.layout, seed.image.bytes);
    const chosen = options.systematic === 'all' ? all : sample(all, options.systematic, random);
    for (const mutation of chosen) cases.push({ seed: name, rngSeed: null, mutations: [mutation] });
  }
  for (let index = 0; index < options.cases; index++) {
    const rngSeed = caseSeed(options.baseSeed, index);
    const name = chooseSeed(seeds, rngSeed);
    const seed = seeds.get(name);
    if (seed === undefined) continue;
    cases.push({ seed: name, rngSeed, mutations: generateMutations(seed.layout, seed.image.bytes, rngSeed) });
  }
  return cases;
}

function sameFindings(a: TargetOutcome[], b: TargetOutcome[]): boolean {
  const keys = (outcomes: TargetOutcome[]): string => outcomes.filter(isFinding).map((outcome) => `${outcome.target}:${outcomeKey(outcome)}`).join(',');
  return keys(a) === keys(b);
}

/** Drops mutations one at a time while the case still finds the same thing. */
async function shrink(harness: FuzzHarness, seedBytes: Uint8Array, fuzzCase: FuzzCase, outcomes: TargetOutcome[], targets: string[]): Promise<FuzzCase> {
  let current = fuzzCase;
  for (let index = current.mutations.length - 1; index >= 0 && current.mutations.length > 1; index--) {
    const fewer = current.mutations.filter((_, position) => position !== index);
    const again = await harness.run(applyMutations(seedBytes, fewer), targets);
    if (sameFindings(again, outcomes)) current = { ...current, mutations: fewer };
  }
  return current;
}

/** Runs a campaign over `seedSet` (built here, in a temp folder, when not given). */
export async function runCampaign(options: CampaignOptions, prebuilt?: SeedSet): Promise<CampaignReport> {
  const started = Date.now();
  const log = options.log ?? (() => {});
  const folder = tempDir();
  try {
    const seedSet = prebuilt ?? (await buildSeeds(folder.path));
    log(`${seedSet.seeds.size} seed images`);
    const cases = generateCases(seedSet.seeds, options);
    const harness = new FuzzHarness({ ...DEFAULT_HARNESS, ...options.harness, folder: folder.file('work'), companions: seedSet.companions });
    const targets = targetNames();
    const tally: CampaignReport['tally'] = {};
    const timing: CampaignReport['timing'] = {};
    const findings: Finding[] = [];
    let done = 0;
    try {
      await inBatches(
        cases.map((fuzzCase) => async () => {
          const seedBytes = seedSet.seeds.get(fuzzCase.seed)?.image.bytes;
          if (seedBytes === undefined) return;
          const outcomes = await harness.run(applyMutations(seedBytes, fuzzCase.mutations), targets);
          for (const outcome of outcomes) {
            const byKey = (tally[outcome.target] ??= {});
            const key = outcomeKey(outcome);
            byKey[key] = (byKey[key] ?? 0) + 1;
            const time = (timing[outcome.target] ??= { totalMs: 0, maxMs: 0, slowest: '' });
            time.totalMs += outcome.ms ?? 0;
            if ((outcome.ms ?? 0) > time.maxMs) {
              time.maxMs = outcome.ms ?? 0;
              time.slowest = `${fuzzCase.seed} [${fuzzCase.mutations.map((mutation) => mutation.label).join('; ')}]`;
            }
          }
          if (outcomes.some(isFinding)) {
            const shrunk = await shrink(harness, seedBytes, fuzzCase, outcomes, targets);
            const image = applyMutations(seedBytes, shrunk.mutations);
            const bad = outcomes.filter(isFinding);
            const fixture = options.save ? saveRegression(shrunk, image, summarizeFindings(bad, outcomeKey)) : null;
            findings.push({ id: caseId(shrunk), fuzzCase: shrunk, outcomes: bad, fixture });
            log(`FINDING ${caseId(shrunk)} [${shrunk.mutations.map((mutation) => mutation.label).join('; ')}]\n  ${bad.map(describeFinding).join('\n  ')}`);
          }
          done++;
          if (done % 1000 === 0) log(`${done}/${cases.length} cases, ${findings.length} findings`);
        }),
        options.harness?.workers ?? DEFAULT_HARNESS.workers,
      );
    } finally {
      await harness.close();
    }
    return { cases: cases.length, findings, tally, timing, durationMs: Date.now() - started };
  } finally {
    folder.cleanup();
  }
}

/** The tally as aligned text: one line per target, outcomes by count. */
export function formatTally(report: CampaignReport): string {
  const lines = [`${report.cases} cases in ${(report.durationMs / 1000).toFixed(1)} s, ${report.findings.length} findings`];
  for (const [target, byKey] of Object.entries(report.tally)) {
    const parts = Object.entries(byKey)
      .sort((a, b) => b[1] - a[1])
      .map(([key, count]) => `${key} ${count}`);
    const time = report.timing[target];
    const ms = time === undefined ? '' : ` (CPU ${(time.totalMs / 1000).toFixed(1)} s in all, slowest ${time.maxMs.toFixed(0)} ms)`;
    lines.push(`  ${target.padEnd(18)} ${parts.join(', ')}${ms}`);
    if (time !== undefined && time.maxMs > 250) lines.push(`  ${''.padEnd(18)} slowest: ${time.slowest}`);
  }
  return lines.join('\n');
}
