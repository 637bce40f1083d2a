/** A check's result in one sentence for the jobs panel. */
import type { CheckResult } from '../../../shared/ipc/contract.ts';

function count(value: number, one: string, many: string): string {
  return `${value} ${value === 1 ? one : many}`;
}

export function describeCheck(result: CheckResult, repaired: boolean): string {
  const corruptions = result.corruptions ?? 0;
  const leaks = result.leaks ?? 0;
  const errors = result['check-errors'] ?? 0;
  if (repaired) {
    const fixed = (result['corruptions-fixed'] ?? 0) + (result['leaks-fixed'] ?? 0);
    const left = corruptions + leaks + errors;
    if (fixed === 0 && left === 0) return 'No errors found; nothing needed repairing.';
    const parts = [`Repaired ${count(result['corruptions-fixed'] ?? 0, 'corruption', 'corruptions')} and ${count(result['leaks-fixed'] ?? 0, 'leaked cluster', 'leaked clusters')}.`];
    parts.push(left === 0 ? 'The image is now clean.' : `${count(left, 'problem remains', 'problems remain')}.`);
    return parts.join(' ');
  }
  if (corruptions === 0 && leaks === 0 && errors === 0) return 'No errors found.';
  const found: string[] = [];
  if (corruptions > 0) found.push(count(corruptions, 'corruption', 'corruptions'));
  if (leaks > 0) found.push(count(leaks, 'leaked cluster', 'leaked clusters'));
  if (errors > 0) found.push(count(errors, 'check error', 'check errors'));
  return `Found ${found.join(', ')}.${corruptions === 0 && errors === 0 ? ' Leaks waste space but harm no data; repair them to reclaim it.' : ' Repair on a copy first.'}`;
}
