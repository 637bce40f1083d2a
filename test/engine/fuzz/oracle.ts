/**
 * What counts as a finding: anything but a normal return or a Qcow2Error with a known code.
 * INTERNAL counts too: the engine uses it for "cannot happen", and a hostile file made it happen,
 * so a check at the parse boundary is missing.
 */
import { isErrorCode } from '../../../src/shared/qcow2/errors.ts';
import type { TargetOutcome } from './protocol.ts';

export function isFinding(outcome: TargetOutcome): boolean {
  if (outcome.status === 'ok') return false;
  if (outcome.status === 'typed') return !isErrorCode(outcome.code) || outcome.code === 'INTERNAL';
  return true;
}

/** A short, stable name for an outcome: `ok`, a code (`CORRUPT`), or `raw TypeError`, `hang`, … */
export function outcomeKey(outcome: TargetOutcome): string {
  if (outcome.status === 'ok') return 'ok';
  if (outcome.status === 'typed') return outcome.code ?? '?';
  if (outcome.status === 'raw') return `raw ${outcome.code ?? 'Error'}`;
  return outcome.status;
}

export function describeFinding(outcome: TargetOutcome): string {
  const stack = outcome.stack?.split('\n').slice(1, 4).map((line) => line.trim()).join(' | ');
  return `${outcome.target}: ${outcomeKey(outcome)}: ${outcome.message ?? ''}${stack ? ` [${stack}]` : ''}`;
}
