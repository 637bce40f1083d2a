/**
 * Which layer of a backing chain gives each guest byte: the topmost image (of those given, top
 * first) that allocates it, as data or as zeros. What `qemu-img commit` copies and what rebase
 * leaves to the backing files are both read from this.
 */
import type { Qcow2Image } from '../image/image.ts';
import { visitLayerRuns } from '../image/layer-runs.ts';

/** data: some layer stores bytes there (plain or compressed); zero: the topmost that allocates it reads zeros; unallocated: none of the layers does. */
export type ChainRunKind = 'data' | 'zero' | 'unallocated';

export type ChainRunVisitor = (guestOffset: number, length: number, kind: ChainRunKind) => void;

/** Visits [start, end) in order, adjacent runs of one kind merged. Past a lower layer's end its bytes read as zeros (QEMU's rule). */
export function visitAllocationAbove(layers: readonly Qcow2Image[], start: number, end: number, visit: ChainRunVisitor): void {
  let pending: { start: number; length: number; kind: ChainRunKind } | null = null;
  const emit: ChainRunVisitor = (guestOffset, length, kind) => {
    if (length <= 0) return;
    if (pending !== null && pending.kind === kind && pending.start + pending.length === guestOffset) pending.length += length;
    else {
      if (pending !== null) visit(pending.start, pending.length, pending.kind);
      pending = { start: guestOffset, length, kind };
    }
  };
  visitLayers(layers, 0, start, end, emit);
  const last = pending as { start: number; length: number; kind: ChainRunKind } | null;
  if (last !== null) visit(last.start, last.length, last.kind);
}

function visitLayers(layers: readonly Qcow2Image[], depth: number, start: number, end: number, visit: ChainRunVisitor): void {
  const layer = layers[depth];
  if (layer === undefined) {
    visit(start, end - start, 'unallocated');
    return;
  }
  // A layer shorter than the disk reads zeros past its end, hiding what lies below it. The first
  // layer given may itself be a backing file (rebase and commit ask about the files below the top).
  const layerEnd = Math.min(end, Math.max(start, layer.virtualSize));
  if (layerEnd > start) {
    visitLayerRuns(layer, layer.l1, start, layerEnd, (guestOffset, length, kind) => {
      if (kind === 'unallocated') visitLayers(layers, depth + 1, guestOffset, guestOffset + length, visit);
      else visit(guestOffset, length, kind === 'zero' ? 'zero' : 'data');
    });
  }
  if (layerEnd < end) visit(layerEnd, end - layerEnd, 'zero');
}

/**
 * The first guest offset at or past `offset` (and below `end`, else `end`) where some layer may
 * give a byte: an L1 entry naming an L2 table, or a layer's end (past it the layer reads zeros,
 * hiding the ones below). Before it every layer reads through, so a walk over a huge sparse disk
 * can leap there instead of visiting its empty stretches a chunk at a time.
 */
export function nextAllocationFrom(layers: readonly Qcow2Image[], offset: number, end: number): number {
  let next = end;
  for (const layer of layers) {
    if (layer.virtualSize <= offset) return offset;
    next = Math.min(next, layer.virtualSize);
    const span = layer.l2Entries * layer.clusterBytes;
    for (let index = Math.floor(offset / span); index < layer.l1.size && index * span < next; index++) {
      if (layer.l2OffsetAt(layer.l1, index) !== 0) {
        next = Math.max(offset, index * span);
        break;
      }
    }
  }
  return Math.min(next, end);
}
