/**
 * Where a backing chain may read other than zeros: what its qcow2 layers allocate as data, and
 * all of a raw file at its bottom. Everywhere else every layer reads through to zeros, so two
 * chains that both read zeros there need not be read to be compared — a safe rebase of an overlay
 * on a huge sparse disk onto another chain otherwise reads and compares every zero of it (as
 * qemu-img 7.2 does: 11 s for 64 GiB).
 */
import type { GuestReader } from '../image/guest-reader.ts';
import { Qcow2Image } from '../image/image.ts';
import { RawImage } from '../image/raw-image.ts';
import { nextAllocationFrom, visitAllocationAbove } from './allocation-above.ts';

export interface PossibleData {
  /** Visits the parts of [start, end) where the chain may read other than zeros, in order. */
  visit(start: number, end: number, visit: (start: number, length: number) => void): void;
  /** The first offset at or past `offset` (below `end`, else `end`) where it may. */
  next(offset: number, end: number): number;
}

/** Nothing but zeros: a missing chain. */
const NONE: PossibleData = { visit: () => {}, next: (_offset, end) => end };

/**
 * The chain that `reader` reads (it and the files below it), or null when it is a reader whose
 * layers cannot be told apart (anything but qcow2 images over a raw file): then all of it counts.
 */
export function possibleData(reader: GuestReader | null): PossibleData | null {
  if (reader === null) return NONE;
  const layers: Qcow2Image[] = [];
  let below: GuestReader | null = reader;
  while (below instanceof Qcow2Image) {
    layers.push(below);
    below = below.backing;
  }
  if (below !== null && !(below instanceof RawImage)) return null;
  // Past a layer's end it reads zeros and hides what lies below (allocation-above.ts): the raw
  // file counts only where every layer reads through to it.
  const rawEnd = below === null ? 0 : Math.min(below.virtualSize, ...layers.map((layer) => layer.virtualSize));
  return {
    visit(start, end, visit) {
      visitAllocationAbove(layers, start, end, (from, length, kind) => {
        if (kind === 'data') visit(from, length);
        else if (kind === 'unallocated' && from < rawEnd) visit(from, Math.min(length, rawEnd - from));
      });
    },
    next(offset, end) {
      if (offset < rawEnd) return offset;
      // A layer that ends at or before `offset` reads zeros from there and hides the ones below it.
      const ended = layers.findIndex((layer) => layer.virtualSize <= offset);
      const reading = ended === -1 ? layers : layers.slice(0, ended);
      return reading.length === 0 ? end : nextAllocationFrom(reading, offset, end);
    },
  };
}
