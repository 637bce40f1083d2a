/**
 * Where a volume's bytes lie in the guest disk: one range from its offset (a partition, a whole
 * disk), or its segments in order (an LVM logical volume, which may be in several pieces).
 */
import type { GuestVolumeInfo } from '../model.ts';
import type { ByteRange } from './filesystem.ts';

/** The guest ranges holding the volume's bytes [offset, offset + length), in order. */
export function guestRangesOf(volume: Pick<GuestVolumeInfo, 'offset' | 'segments'>, offset: number, length: number): ByteRange[] {
  if (volume.segments === undefined) return length > 0 ? [{ offset: volume.offset + offset, length }] : [];
  const ranges: ByteRange[] = [];
  let segmentStart = 0;
  for (const segment of volume.segments) {
    const from = Math.max(offset, segmentStart);
    const to = Math.min(offset + length, segmentStart + segment.length);
    if (from < to) ranges.push({ offset: segment.offset + (from - segmentStart), length: to - from });
    segmentStart += segment.length;
    if (segmentStart >= offset + length) break;
  }
  return ranges;
}

/** Whether two volumes lie on the same guest bytes. */
export function samePlace(a: Pick<GuestVolumeInfo, 'offset' | 'length' | 'segments'>, b: Pick<GuestVolumeInfo, 'offset' | 'length' | 'segments'>): boolean {
  const rangesA = guestRangesOf(a, 0, a.length);
  const rangesB = guestRangesOf(b, 0, b.length);
  return rangesA.length === rangesB.length && rangesA.every((range, index) => range.offset === rangesB[index]?.offset && range.length === rangesB[index]?.length);
}
