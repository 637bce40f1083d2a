import type { CompressedData } from './qcow2/model.ts';

/** The states that read compressed data, for a sentence: "the current disk and 2 snapshots", "1 snapshot", "the current disk". */
export function compressedStates(data: CompressedData): string {
  const snapshots = data.inSnapshots === 0 ? '' : data.inSnapshots === 1 ? '1 snapshot' : `${data.inSnapshots} snapshots`;
  if (!data.inCurrent) return snapshots;
  return snapshots === '' ? 'the current disk' : `the current disk and ${snapshots}`;
}
