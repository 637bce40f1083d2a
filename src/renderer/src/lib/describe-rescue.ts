/** A rescue copy ("Save what can be read…") in words: each reason code, and the summary for the jobs panel. */
import { formatBytes } from '../../../shared/format-units.ts';
import type { RescueReport } from '../../../shared/ipc/contract.ts';
import type { UnreadableReason } from '../../../shared/qcow2/model.ts';
import { baseName } from './paths.ts';

const REASON_WORDS: Readonly<Record<UnreadableReason, string>> = {
  L1_RESERVED_BITS: 'Its top-level table entry is garbled',
  L2_UNALIGNED: 'Its mapping table is at an impossible place',
  L2_OUT_OF_FILE: 'Its mapping table lies past the end of the file',
  L2_OVERLAPS_METADATA: 'Its mapping table sits on other metadata',
  L2_RESERVED_BITS: 'Its mapping entry is garbled',
  CLUSTER_UNALIGNED: 'Its data is at an impossible place',
  CLUSTER_OUT_OF_FILE: 'Its data lies past the end of the file',
  CLUSTER_OVERLAPS_METADATA: 'Its data sits on metadata',
  L2_BITMAP_INVALID: 'Its mapping entry contradicts itself',
  COMPRESSED_CORRUPT: 'Its compressed data does not decompress',
  READ_ERROR: 'The drive could not read it',
  CORRUPT: 'The image is inconsistent there',
};

/** Plain words for an unreadable range's reason; an unknown code (a newer main) as itself. */
export function reasonWords(reason: string): string {
  return Object.hasOwn(REASON_WORDS, reason) ? REASON_WORDS[reason as UnreadableReason] : reason;
}

export function describeRescue(result: RescueReport): string {
  const name = baseName(result.target);
  if (result.unreadableRangeCount === 0) return `Saved as ${name}: everything could be read.`;
  const ranges = `${result.unreadableRangeCount} range${result.unreadableRangeCount === 1 ? '' : 's'}`;
  return `Saved as ${name}; ${formatBytes(result.unreadableBytes)} in ${ranges} could not be read and are zeros.`;
}
