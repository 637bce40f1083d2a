/**
 * `node scripts/security-scan.ts [--input DIR]` (part of `npm run lint`): Electron's security
 * linter over `src` (or DIR) for the Electron version installed, offline. Fails on any finding
 * above LOW that no `security-scan: accept CHECK — why` comment beside the code accepts.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { parseArgs } from 'node:util';
import { installedElectronVersion, scanFolder } from './lib/electronegativity.ts';
import { fail } from './lib/fail.ts';
import { userPath, projectPath } from './lib/project.ts';
import { describeFinding, reviewFindings } from './lib/security-review.ts';

// What electronegativity reads, plus .vue (it skips those, but an acceptance or eng-disable there still counts).
const SOURCE_EXTENSIONS = ['.ts', '.tsx', '.js', '.jsx', '.cjs', '.mjs', '.html', '.htm', '.vue'];

function sourcesUnder(folder: string): Map<string, string> {
  const sources = new Map<string, string>();
  for (const entry of readdirSync(folder, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !SOURCE_EXTENSIONS.some((extension) => entry.name.endsWith(extension))) continue;
    const path = join(entry.parentPath, entry.name);
    if (path.split(sep).includes('node_modules')) continue;
    sources.set(relative(folder, path).split(sep).join('/'), readFileSync(path, 'utf8'));
  }
  return sources;
}

function displayPath(folder: string): string {
  const inProject = relative(projectPath(), folder);
  return inProject === '' ? '.' : inProject.startsWith('..') ? folder : inProject;
}

try {
  const { values } = parseArgs({ options: { input: { type: 'string' } }, strict: true });
  const input = values.input === undefined ? projectPath('src') : userPath(values.input);
  const electronVersion = installedElectronVersion();
  const started = Date.now();
  const findings = await scanFolder(input, electronVersion);
  const review = reviewFindings(findings, sourcesUnder(input));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);

  for (const { finding, acceptance } of review.accepted) {
    console.log(`accepted: ${finding.check} at ${finding.file}:${finding.line} — ${acceptance.reason}`);
  }
  for (const finding of review.notes) console.log(`note: ${describeFinding(finding)}`);
  for (const problem of review.problems) console.error(`problem: ${problem}`);
  for (const finding of review.blocking) console.error(`FINDING: ${describeFinding(finding)}`);

  const summary =
    `security scan of ${displayPath(input)} for Electron ${electronVersion} in ${seconds} s: ` +
    `${review.blocking.length} above LOW, ${review.accepted.length} accepted, ${review.notes.length} LOW or below, ` +
    `${review.problems.length} comment problems`;
  if (review.blocking.length > 0 || review.problems.length > 0) fail(summary);
  console.log(summary);
} catch (error) {
  fail(error);
}
