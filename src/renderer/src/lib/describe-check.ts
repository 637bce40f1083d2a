/** A check's result in plain words for the jobs panel: what was found, what was repaired, what was lost. */
import type { CheckResult, RepairLoss } from '../../../shared/ipc/contract.ts';
import { formatBytes } from '../../../shared/format-units.ts';
import { describeUnencrypted } from './describe-image.ts';

function count(value: number, one: string, many: string): string {
  return `${value} ${value === 1 ? one : many}`;
}

/** One sentence per loss a repair reports (result.lost): which snapshot, what of it, and why. */
export function describeLosses(lost: readonly RepairLoss[]): string[] {
  const sentences: string[] = [];
  const unnamed = lost.filter((loss) => loss.what === 'snapshot' && loss['snapshot-id'] === null);
  if (unnamed.length > 0) {
    if (unnamed.length === 1) sentences.push(`A snapshot whose name could not be read was removed, because ${unnamed[0]?.reason ?? 'its entry was broken'}.`);
    else sentences.push(`${unnamed.length} snapshots whose names could not be read were removed, because their entries in the snapshot table were broken (the first: ${unnamed[0]?.reason ?? '?'}).`);
  }
  for (const loss of lost) {
    if (loss.what === 'snapshot' && loss['snapshot-id'] === null) continue;
    const name = `Snapshot “${loss['snapshot-name'] ?? ''}” (ID ${loss['snapshot-id'] ?? '?'})`;
    if (loss.what === 'snapshot') sentences.push(`${name} was removed, because ${loss.reason}.`);
    else {
      const start = loss['guest-offset'] ?? 0;
      sentences.push(`${name} lost ${formatBytes(loss.length ?? 0)} of its disk from ${formatBytes(start)} on, which now reads as zeros, because ${loss.reason}.`);
    }
  }
  return sentences;
}

/** `encryption`: the disk's encrypt.format, for the remedy of plaintext found in it. */
export function describeCheck(result: CheckResult, repaired: boolean, encryption?: string): string {
  const plaintext = describeUnencrypted(result['unencrypted-bytes'], encryption);
  const verdict = checkVerdict(result, repaired);
  return plaintext === null ? verdict : `${verdict} Warning: ${plaintext}`;
}

function checkVerdict(result: CheckResult, repaired: boolean): string {
  const corruptions = result.corruptions ?? 0;
  const leaks = result.leaks ?? 0;
  const errors = result['check-errors'] ?? 0;
  if (repaired) {
    const fixed = (result['corruptions-fixed'] ?? 0) + (result['leaks-fixed'] ?? 0);
    const left = corruptions + leaks + errors;
    const losses = describeLosses(result.lost ?? []);
    if (fixed === 0 && left === 0 && losses.length === 0) return 'No errors found; nothing needed repairing.';
    const parts = [`Repaired ${count(result['corruptions-fixed'] ?? 0, 'corruption', 'corruptions')} and ${count(result['leaks-fixed'] ?? 0, 'leaked cluster', 'leaked clusters')}.`];
    if (losses.length > 0) parts.push('Some of it was broken beyond repair and had to go (qemu-img’s repair drops it too, without saying):', ...losses);
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
