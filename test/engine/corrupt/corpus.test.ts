/**
 * Issue 21: images damaged after qemu-iotests' recipes, through every entry point a user reaches.
 * No crash, no hang, the same guest data as qemu-img wherever both read, no failed change that
 * wrote, and a repair at least as good as qemu-img's (but for the cases known-weak-repairs.ts lists).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';
import { formatTally, runCorpus, tally, type CorpusTally } from './corpus.ts';
import { KNOWN_WEAK_REPAIRS } from './known-weak-repairs.ts';
import { CASES } from './recipes.ts';

let folder: TempDir;
let result: CorpusTally;
beforeAll(async () => {
  folder = tempDir();
  const only = process.env.CORPUS_ONLY;
  const targets = process.env.CORPUS_TARGETS?.split(',');
  result = tally(await runCorpus(folder.path, only === undefined ? undefined : (name) => name.includes(only), targets));
  console.log(formatTally(result));
}, 300_000);
afterAll(() => folder.cleanup());

describe('damaged-image corpus', () => {
  it('has a hundred cases or more, each named once', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(100);
    expect(new Set(CASES.map((entry) => entry.name)).size).toBe(CASES.length);
  });

  it('never crashes or hangs', () => {
    expect(result.crashes).toEqual([]);
    expect(result.hangs).toEqual([]);
  });

  it('reads the same guest data as qemu-img wherever both read', () => {
    expect(result.dataDisagreements).toEqual([]);
  });

  it('leaves the file as it was when a change fails', () => {
    expect(result.changesThatWrote).toEqual([]);
  });

  it('repairs at least what qemu-img repairs, but for the known-weak cases', () => {
    const weaker = [...new Set(result.weakerRepairs)];
    expect(result.weakerRepairDetails.filter((_, index) => !KNOWN_WEAK_REPAIRS.includes(result.weakerRepairs[index] ?? ''))).toEqual([]);
    const fixed = KNOWN_WEAK_REPAIRS.filter((name) => !weaker.includes(name) && CASES.some((entry) => entry.name === name));
    if (fixed.length > 0) console.log(`known-weak repairs that are no longer weaker (remove them from known-weak-repairs.ts): ${fixed.join(', ')}`);
  });
});
