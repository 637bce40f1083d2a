/**
 * The crash table as vitest tests: every entry with the given contract, cut at every write point
 * with every loss pattern a power cut allows (harness.ts, runner.ts). Split by contract into two
 * test files so that they run in parallel. `npm test` runs the quick table; `npm run crash`
 * (CRASH_FULL=1) runs every entry with many more random loss patterns.
 */
import { describe, expect, it } from 'vitest';
import type { Contract } from './guest-state.ts';
import { imageOperations } from './harness.ts';
import { crashSettings, runCrashCase, summary } from './runner.ts';

export function crashSuite(contract: Contract, title: string): void {
  const operations = imageOperations.filter((operation) => operation.contract === contract && (crashSettings.full || operation.fullOnly !== true));
  describe(title, () => {
    for (const operation of operations) {
      it(operation.name, async () => {
        const report = await runCrashCase(operation);
        console.log(summary(report));
        expect(report.failures).toEqual([]);
        expect(report.distinct).toBeGreaterThanOrEqual(2);
      }, crashSettings.full ? 3 * 3600_000 : 900_000);
    }
  });
}
