/**
 * Judges the security scan's findings: anything above LOW fails, unless a comment beside the code
 * accepts that check there and says why:
 *
 *     // security-scan: accept PRELOAD_JS_CHECK — the preload exposes only the typed contract
 *
 * on the finding's line or up to three lines above it. An acceptance that matches no finding fails
 * too (the code moved or was fixed), and so does electronegativity's own `eng-disable` comment,
 * which hides a finding without a reason.
 */
import type { Finding, Severity } from './electronegativity.ts';

export interface Acceptance {
  file: string;
  line: number;
  check: string;
  reason: string;
}

export interface Review {
  /** Above LOW and not accepted: these fail the check. */
  blocking: Finding[];
  accepted: { finding: Finding; acceptance: Acceptance }[];
  /** LOW and INFORMATIONAL: printed, never failing. */
  notes: Finding[];
  /** Comments that break the rules above: each fails the check. */
  problems: string[];
}

const SEVERITY_RANK: Readonly<Record<Severity, number>> = { INFORMATIONAL: 0, LOW: 1, MEDIUM: 2, HIGH: 3 };
const ACCEPT = /security-scan:\s*accept\s+([A-Z0-9_]+)\s*(?:—|–|--|-|:)?\s*(.*?)\s*(?:\*\/|-->)?\s*$/;
const ENGINE_DISABLE = /eng-disable/i;
const MIN_REASON_LENGTH = 15;
const LINES_ABOVE = 3;

export function isAboveLow(severity: Severity): boolean {
  return SEVERITY_RANK[severity] > SEVERITY_RANK.LOW;
}

/** The acceptances and the forbidden comments in one source file (`file` relative, "/"-separated). */
export function acceptancesIn(file: string, text: string): { acceptances: Acceptance[]; problems: string[] } {
  const acceptances: Acceptance[] = [];
  const problems: string[] = [];
  text.split(/\r?\n/).forEach((content, index) => {
    const line = index + 1;
    if (ENGINE_DISABLE.test(content)) {
      problems.push(`${file}:${line}: eng-disable hides a finding without a reason; write "security-scan: accept CHECK_ID — why" instead`);
    }
    const match = ACCEPT.exec(content);
    if (match === null) return;
    const check = match[1] ?? '';
    const reason = match[2] ?? '';
    if (reason.length < MIN_REASON_LENGTH) {
      problems.push(`${file}:${line}: the acceptance of ${check} needs its reason (at least ${MIN_REASON_LENGTH} characters)`);
      return;
    }
    acceptances.push({ file, line, check, reason });
  });
  return { acceptances, problems };
}

/** Sorts findings into blocking, accepted and notes against the acceptances written in `sources`. */
export function reviewFindings(findings: readonly Finding[], sources: ReadonlyMap<string, string>): Review {
  const acceptances: Acceptance[] = [];
  const problems: string[] = [];
  for (const [file, text] of sources) {
    const found = acceptancesIn(file, text);
    acceptances.push(...found.acceptances);
    problems.push(...found.problems);
  }

  const used = new Set<Acceptance>();
  const review: Review = { blocking: [], accepted: [], notes: [], problems };
  for (const finding of findings) {
    if (!isAboveLow(finding.severity)) {
      review.notes.push(finding);
      continue;
    }
    const acceptance = acceptances.find(
      (candidate) =>
        candidate.file === finding.file &&
        candidate.check === finding.check &&
        finding.line >= candidate.line &&
        finding.line <= candidate.line + LINES_ABOVE,
    );
    if (acceptance === undefined) {
      review.blocking.push(finding);
    } else {
      used.add(acceptance);
      review.accepted.push({ finding, acceptance });
    }
  }
  for (const acceptance of acceptances) {
    if (!used.has(acceptance)) {
      problems.push(`${acceptance.file}:${acceptance.line}: accepts ${acceptance.check}, but the scan reports no such finding there; remove the comment`);
    }
  }
  return review;
}

export function describeFinding(finding: Finding): string {
  const where = finding.file === 'N/A' ? 'the app' : `${finding.file}:${finding.line}:${finding.column}`;
  const sample = finding.sample === '' || finding.sample === 'N/A' ? '' : `  [${finding.sample.slice(0, 100)}]`;
  return `${finding.severity} ${finding.check} at ${where}: ${finding.description}${sample}`;
}
