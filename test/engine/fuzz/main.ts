/**
 * `npm run fuzz`: many thousands of hostile images through every target, with counts printed.
 *   FUZZ_CASES (default 20000) random cases, FUZZ_SEED (default 1) for the rng, FUZZ_WORKERS
 *   (default 2) threads, FUZZ_SYSTEMATIC ('all' or a number per seed; default all).
 * Failing cases are shrunk and saved in test/engine/fuzz/regressions/. Exit code 1 on any finding.
 */
import { formatTally, runCampaign } from './campaign.ts';

function numberFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${name} must be a whole number, not ${raw}`);
  return value;
}

const systematicEnv = process.env.FUZZ_SYSTEMATIC ?? 'all';
const report = await runCampaign({
  cases: numberFromEnv('FUZZ_CASES', 20000),
  baseSeed: numberFromEnv('FUZZ_SEED', 1),
  systematic: systematicEnv === 'all' ? 'all' : numberFromEnv('FUZZ_SYSTEMATIC', 0),
  save: true,
  harness: { workers: numberFromEnv('FUZZ_WORKERS', 2) },
  log: (line) => console.log(line),
});
console.log(formatTally(report));
for (const finding of report.findings) console.log(`saved ${finding.fixture ?? '(not saved)'}`);
process.exitCode = report.findings.length > 0 ? 1 : 0;
