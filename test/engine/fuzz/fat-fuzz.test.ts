/**
 * Hostile FAT volumes (issue 22): small FAT12/16/32 volumes made by mkfs.fat and mtools, damaged
 * where their structures are (fat-mutations.ts), through the probe and a whole-volume walk in the
 * fuzzer's resource-limited workers. Every failure must be a Qcow2Error with a known code; no raw
 * exception, no read past the volume, no hang, no unbounded memory. Findings are saved in
 * regressions-fat/ (replayed below on every run). FAT_FUZZ_CASES, FAT_FUZZ_SYSTEMATIC and
 * FAT_FUZZ_SEED scale it up.
 */
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inBatches, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { buildFatSeeds, type FatSeed } from './fat-layout.ts';
import { randomFatMutations, systematicFatMutations } from './fat-mutations.ts';
import { FAT_TARGET_NAMES } from './fat-targets.ts';
import { DEFAULT_HARNESS, FuzzHarness } from './harness.ts';
import { describeFinding, isFinding, outcomeKey } from './oracle.ts';
import { applyMutations, mutationPatches, writtenOver } from './patches.ts';
import { loadRegressions, saveRegression, summarizeFindings, type FuzzCase } from './regressions.ts';

const CASES = Number(process.env.FAT_FUZZ_CASES ?? 200);
const SYSTEMATIC_PER_SEED = process.env.FAT_FUZZ_SYSTEMATIC === 'all' ? 'all' : Number(process.env.FAT_FUZZ_SYSTEMATIC ?? 100);
const BASE_SEED = Number(process.env.FAT_FUZZ_SEED ?? 22);
const FAT_REGRESSIONS = path.join(path.dirname(fileURLToPath(import.meta.url)), 'regressions-fat');

let folder: TempDir;
let seeds: Map<string, FatSeed>;
let harness: FuzzHarness;
beforeAll(async () => {
  folder = tempDir();
  seeds = await buildFatSeeds(folder.path);
  harness = new FuzzHarness({ ...DEFAULT_HARNESS, folder: folder.file('work'), companions: [] });
}, 120_000);
afterAll(async () => {
  await harness?.close();
  folder?.cleanup();
});

function seedBytes(name: string): Uint8Array {
  const seed = seeds.get(name);
  if (seed === undefined) throw new Error(`no FAT seed ${name}`);
  return seed.bytes;
}

function generateCases(): FuzzCase[] {
  const cases: FuzzCase[] = [];
  const random = new SeededRandom(BASE_SEED);
  for (const [name, seed] of seeds) {
    const all = systematicFatMutations(seed.layout, seed.bytes);
    const chosen = SYSTEMATIC_PER_SEED === 'all' ? all : all.filter(() => random.next() < SYSTEMATIC_PER_SEED / all.length);
    for (const mutation of chosen) cases.push({ seed: name, rngSeed: null, mutations: [mutation] });
  }
  const names = [...seeds.keys()];
  for (let index = 0; index < CASES; index++) {
    const rngSeed = (Math.imul(BASE_SEED, 0x9e3779b1) + Math.imul(index + 1, 0x85ebca6b)) >>> 0;
    const name = names[index % names.length] as string;
    const seed = seeds.get(name) as FatSeed;
    cases.push({ seed: name, rngSeed, mutations: randomFatMutations(seed.layout, seed.bytes, rngSeed) });
  }
  return cases;
}

describe('hostile FAT volumes', () => {
  it('every clean seed probes as FAT and walks without an error', async () => {
    for (const name of seeds.keys()) {
      const outcomes = await harness.run(seedBytes(name), FAT_TARGET_NAMES);
      expect(outcomes.map((outcome) => `${name} ${outcome.target}: ${outcomeKey(outcome)} ${outcome.message ?? ''}`.trim())).toEqual(FAT_TARGET_NAMES.map((target) => `${name} ${target}: ok`));
    }
  }, 60_000);

  it(`${CASES} random and ~${SYSTEMATIC_PER_SEED} systematic cases per seed: every failure is a typed error`, async () => {
    const cases = generateCases();
    const tally: Record<string, Record<string, number>> = {};
    const findings: string[] = [];
    // A seed after another: each worker's file then takes only each case's patches (harness.ts runPatched).
    const bySeed = [...cases].sort((a, b) => a.seed.localeCompare(b.seed));
    await inBatches(
      bySeed.map((fuzzCase) => async () => {
        const seed = seedBytes(fuzzCase.seed);
        const patches = mutationPatches(seed, fuzzCase.mutations);
        const outcomes = patches === null ? await harness.run(applyMutations(seed, fuzzCase.mutations), FAT_TARGET_NAMES) : await harness.runPatched(seed, patches, FAT_TARGET_NAMES);
        for (const outcome of outcomes) {
          const byKey = (tally[outcome.target] ??= {});
          byKey[outcomeKey(outcome)] = (byKey[outcomeKey(outcome)] ?? 0) + 1;
        }
        const bad = outcomes.filter(isFinding);
        if (bad.length === 0) return;
        const fixture = saveRegression(fuzzCase, applyMutations(seed, fuzzCase.mutations), summarizeFindings(bad, outcomeKey), FAT_REGRESSIONS);
        findings.push(`${fixture} [${fuzzCase.mutations.map((mutation) => mutation.label).join('; ')}]: ${bad.map(describeFinding).join(' / ')}`);
      }),
      DEFAULT_HARNESS.workers,
    );
    console.log(`${cases.length} FAT cases:`, JSON.stringify(tally));
    expect(findings).toEqual([]);
    // The damage reaches past the boot sector: many volumes still walk, and the walk fails in typed ways.
    const walk = tally['fat-walk'] ?? {};
    expect(walk.ok ?? 0).toBeGreaterThan(cases.length / 10);
    expect(walk.FILESYSTEM_CORRUPT ?? 0).toBeGreaterThan(cases.length / 10);
  }, 600_000);

  it('the byte patches of a case give its image: every case of the FAT12 seed, written over it in order', () => {
    const seed = seedBytes('fat12-small');
    const cases = generateCases().filter((fuzzCase) => fuzzCase.seed === 'fat12-small');
    let patched = 0;
    for (const fuzzCase of cases) {
      const patches = mutationPatches(seed, fuzzCase.mutations);
      if (patches === null) continue;
      patched++;
      expect(writtenOver(seed, patches), fuzzCase.mutations.map((mutation) => mutation.label).join('; ')).toEqual(applyMutations(seed, fuzzCase.mutations));
    }
    expect(patched).toBeGreaterThan(cases.length / 2);
  });

  it('every saved FAT finding stays fixed', async () => {
    const fixtures = loadRegressions(FAT_REGRESSIONS);
    expect(fixtures.length).toBeGreaterThan(0);
    for (const { name, fixture } of fixtures) {
      const outcomes = await harness.run(applyMutations(seedBytes(fixture.seed), fixture.mutations), FAT_TARGET_NAMES);
      expect([name, outcomes.filter(isFinding).map(describeFinding)]).toEqual([name, []]);
    }
  }, 120_000);
});
