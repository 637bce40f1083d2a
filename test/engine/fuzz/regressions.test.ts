/** Every fuzz case that once found a bug (test/engine/fuzz/regressions/) stays fixed. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { buildSeeds, type SeedSet } from './campaign.ts';
import { DEFAULT_HARNESS, FuzzHarness } from './harness.ts';
import { describeFinding, isFinding } from './oracle.ts';
import { loadRegressions, regressionImage } from './regressions.ts';
import { targetNames } from './targets.ts';

const fixtures = loadRegressions();
let folder: TempDir;
let seedSet: SeedSet;
let harness: FuzzHarness;

beforeAll(async () => {
  folder = tempDir();
  // Committed images still need their seed's backing file beside them.
  seedSet = await buildSeeds(folder.path, [...new Set(fixtures.map(({ fixture }) => fixture.seed))]);
  harness = new FuzzHarness({ ...DEFAULT_HARNESS, folder: folder.file('work'), companions: seedSet.companions });
}, 60_000);
afterAll(async () => {
  await harness.close();
  folder.cleanup();
});

describe('fuzz regressions', () => {
  it('the fixtures are there', () => {
    expect(fixtures.length).toBeGreaterThan(0);
  });

  it.each(fixtures)('$name: every target fails cleanly or succeeds', async ({ fixture }) => {
    const image = regressionImage(fixture, () => {
      const seed = seedSet.seeds.get(fixture.seed);
      if (seed === undefined) throw new Error(`no seed ${fixture.seed}`);
      return seed.image.bytes;
    });
    const outcomes = await harness.run(image, targetNames());
    expect(outcomes.filter(isFinding).map(describeFinding)).toEqual([]);
  }, 60_000);
});
