/**
 * Hostile images (issue 12): valid qemu-img images, mutated where their structures are, through
 * every engine entry point a user reaches. Every failure must be a Qcow2Error with a known code;
 * no raw exception, no hang, no unbounded memory. `npm run fuzz` runs the same at full size.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { buildSeeds, formatTally, generateCases, runCampaign, type SeedSet } from './campaign.ts';
import { DEFAULT_HARNESS, FuzzHarness } from './harness.ts';
import { applyMutations } from './mutations.ts';
import { describeFinding, isFinding, outcomeKey } from './oracle.ts';
import { readTargetNames, targetNames } from './targets.ts';

const CASES = Number(process.env.FUZZ_CASES ?? 300);
const SYSTEMATIC_PER_SEED = Number(process.env.FUZZ_SYSTEMATIC ?? 20);
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 12);

let folder: TempDir;
let seedSet: SeedSet;
beforeAll(async () => {
  folder = tempDir();
  seedSet = await buildSeeds(folder.path);
}, 60_000);
afterAll(() => folder.cleanup());

function anySeed(): Uint8Array {
  const seed = seedSet.seeds.values().next().value;
  if (seed === undefined) throw new Error('no seeds');
  return seed.image.bytes;
}

describe('fuzz harness', () => {
  it('every seed image passes every read target without an error, and every change without a finding', async () => {
    const harness = new FuzzHarness({ ...DEFAULT_HARNESS, folder: folder.file('clean'), companions: seedSet.companions });
    try {
      for (const [name, seed] of seedSet.seeds) {
        const outcomes = await harness.run(seed.image.bytes, targetNames());
        const reads = outcomes.filter((outcome) => readTargetNames().includes(outcome.target));
        expect(reads.map((outcome) => `${name} ${outcome.target}: ${outcomeKey(outcome)} ${outcome.message ?? ''}`.trim())).toEqual(readTargetNames().map((target) => `${name} ${target}: ok`));
        expect(outcomes.filter(isFinding).map(describeFinding)).toEqual([]);
      }
    } finally {
      await harness.close();
    }
  }, 120_000);

  it('catches raw exceptions, INTERNAL codes, hangs and oversized buffers (even when caught), and carries on', async () => {
    const harness = new FuzzHarness({ ...DEFAULT_HARNESS, deadlineMs: 1000, retryHangs: false, folder: folder.file('self-test'), companions: [], workers: 1 });
    try {
      const names = ['typed', 'internal', 'raw', 'stack', 'hang', 'allocate', 'swallowed-allocation', 'typed'].map((name) => `self-test:${name}`);
      const outcomes = await harness.run(anySeed(), names);
      expect(outcomes.map((outcome) => [outcome.target, outcomeKey(outcome), isFinding(outcome)])).toEqual([
        ['self-test:typed', 'CORRUPT', false],
        ['self-test:internal', 'INTERNAL', true],
        ['self-test:raw', 'raw TypeError', true],
        ['self-test:stack', 'raw RangeError', true],
        ['self-test:hang', 'hang', true],
        ['self-test:allocate', 'memory', true],
        ['self-test:swallowed-allocation', 'memory', true],
        // The harness carries on in a fresh worker after a hang.
        ['self-test:typed', 'CORRUPT', false],
      ]);
    } finally {
      await harness.close();
    }
  }, 30_000);

  it('catches a worker running out of heap', async () => {
    // V8 takes about two seconds of garbage collection to give up near the limit: a longer deadline here.
    const harness = new FuzzHarness({ ...DEFAULT_HARNESS, deadlineMs: 20_000, folder: folder.file('self-test-heap'), companions: [], workers: 1 });
    try {
      const outcomes = await harness.run(anySeed(), ['self-test:heap', 'self-test:typed']);
      expect(outcomes.map((outcome) => [outcome.target, outcomeKey(outcome)])).toEqual([
        ['self-test:heap', 'oom'],
        ['self-test:typed', 'CORRUPT'],
      ]);
    } finally {
      await harness.close();
    }
  }, 60_000);

  it('a case is the same bytes every time its rng seed is replayed', () => {
    const first = generateCases(seedSet.seeds, { cases: 50, baseSeed: 99, systematic: 3 });
    const second = generateCases(seedSet.seeds, { cases: 50, baseSeed: 99, systematic: 3 });
    expect(second).toEqual(first);
    const distinct = new Set(first.map((fuzzCase) => JSON.stringify(fuzzCase.mutations)));
    expect(distinct.size).toBeGreaterThan(45);
    for (const fuzzCase of first.slice(0, 10)) {
      const seedBytes = seedSet.seeds.get(fuzzCase.seed)?.image.bytes ?? new Uint8Array();
      const image = Buffer.from(applyMutations(seedBytes, fuzzCase.mutations));
      expect(image.equals(applyMutations(seedBytes, fuzzCase.mutations))).toBe(true);
      expect(image.equals(seedBytes)).toBe(false);
    }
  });
});

describe('hostile images', () => {
  it(`${CASES} random and ${SYSTEMATIC_PER_SEED} systematic cases per seed: every failure is a typed error with a code`, async () => {
    const report = await runCampaign({ cases: CASES, baseSeed: BASE_SEED, systematic: SYSTEMATIC_PER_SEED, save: true }, seedSet);
    console.log(formatTally(report));
    const findings = report.findings.map((finding) => `${finding.fixture ?? finding.id} [${finding.fuzzCase.mutations.map((mutation) => mutation.label).join('; ')}]: ${finding.outcomes.map(describeFinding).join(' / ')}`);
    expect(findings).toEqual([]);
    // The mutations reach past the header: some images open, and reads fail in several ways.
    const readGuest = report.tally['read-guest'] ?? {};
    expect(readGuest.ok ?? 0).toBeGreaterThan(CASES / 10);
    expect(Object.keys(readGuest).length).toBeGreaterThan(3);
  }, 600_000);
});
