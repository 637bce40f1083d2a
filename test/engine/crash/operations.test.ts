/**
 * Every mutating operation in the crash table, cut at every write point with every loss pattern
 * a power cut allows (harness.ts, runner.ts). `npm test` runs the quick table; `npm run crash`
 * (CRASH_FULL=1) runs every entry with many more random loss patterns.
 */
import { describe, expect, it } from 'vitest';
import { imageOperations } from './harness.ts';
import { crashSettings, runCrashCase, summary } from './runner.ts';

const operations = imageOperations.filter((operation) => crashSettings.full || operation.fullOnly !== true);

describe('a power cut at any point of an operation leaves a valid image with the before or the after state', () => {
  for (const operation of operations) {
    it(operation.name, async () => {
      const report = await runCrashCase(operation);
      console.log(summary(report));
      expect(report.failures).toEqual([]);
      expect(report.distinct).toBeGreaterThanOrEqual(2);
    }, 600_000);
  }
});
