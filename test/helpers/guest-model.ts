/**
 * Guest operations applied both to a Cowbell image and to a plain byte array that models what the
 * guest must read afterwards, with the engine's documented semantics (image.ts):
 *  - a zero write always reads back as zeros;
 *  - a discard affects whole clusters only (plus the partial last cluster when the range reaches
 *    the end of the disk); they read as zeros, except in a v2 image with a backing file, where
 *    the engine keeps the data (v2 has no zero flag to hide the backing file with).
 */
import type { Qcow2Image } from '../../src/shared/qcow2/image/image.ts';
import type { SeededRandom } from './seeded-random.ts';

export type GuestOp =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'zero'; offset: number; length: number }
  | { kind: 'discard'; offset: number; length: number };

export interface DiscardSemantics {
  clusterSize: number;
  virtualSize: number;
  version: 2 | 3;
  hasBacking: boolean;
}

export function applyToImage(image: Qcow2Image, op: GuestOp): void {
  if (op.kind === 'write') image.write(op.data, op.offset);
  else if (op.kind === 'zero') image.writeZeroes(op.offset, op.length);
  else image.discard(op.offset, op.length);
}

export function applyToModel(model: Uint8Array, op: GuestOp, semantics: DiscardSemantics): void {
  if (op.kind === 'write') model.set(op.data, op.offset);
  else if (op.kind === 'zero') model.fill(0, op.offset, op.offset + op.length);
  else if (!semantics.hasBacking || semantics.version === 3) {
    for (const [start, end] of discardedClusters(op.offset, op.length, semantics)) model.fill(0, start, end);
  }
}

/** The [start, end) guest ranges of the clusters a discard takes away. */
export function discardedClusters(offset: number, length: number, semantics: DiscardSemantics): [number, number][] {
  const { clusterSize, virtualSize } = semantics;
  const end = offset + length;
  const ranges: [number, number][] = [];
  for (let start = Math.ceil(offset / clusterSize) * clusterSize; start < end; start += clusterSize) {
    const clusterEnd = Math.min(start + clusterSize, virtualSize);
    if (clusterEnd <= end) ranges.push([start, clusterEnd]);
  }
  return ranges;
}

/**
 * Random guest operations over a disk: offsets and lengths aligned to clusters, to 1/32 of a
 * cluster (extended L2's subclusters) or to nothing, lengths up to three clusters.
 */
export function randomGuestOps(random: SeededRandom, virtualSize: number, clusterSize: number, count: number): GuestOp[] {
  const grains = [clusterSize, Math.max(512, clusterSize / 32), 1];
  const ops: GuestOp[] = [];
  for (let index = 0; index < count; index++) {
    const grain = grains[random.int(0, grains.length)] ?? 1;
    const offset = Math.floor(random.int(0, virtualSize) / grain) * grain;
    const maxLength = Math.min(3 * clusterSize, virtualSize - offset);
    const length = Math.max(1, Math.min(maxLength, Math.ceil(random.int(1, maxLength + 1) / grain) * grain));
    const roll = random.next();
    if (roll < 0.55) ops.push({ kind: 'write', offset, data: random.bytes(length) });
    else if (roll < 0.8) ops.push({ kind: 'zero', offset, length });
    else ops.push({ kind: 'discard', offset, length });
  }
  return ops;
}
