/**
 * The allocation map for the UI: guest clusters grouped into cells, each cell counting its bytes
 * by state (data, zero, compressed, unallocated, from the backing chain), for the current state or
 * a snapshot. Computed from L1 and L2 tables only; an L1 entry without an L2 table is counted
 * whole, so a sparse disk of any size maps in time proportional to its tables.
 */
import { Qcow2Error } from '../errors.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { Qcow2Image, type L1Table, type SnapshotRef } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { visitLayerRuns, type RunKind } from '../image/layer-runs.ts';
import { layerLength } from '../image/map.ts';
import type { AllocationMap } from '../model.ts';
import { RawImage } from '../image/raw-image.ts';
import { findSnapshot } from './snapshots.ts';

export const MAX_CELLS = 65536;
const STEP_BYTES = 16 * 1024 * 1024 * 1024;

type CellState = 'data' | 'zero' | 'compressed' | 'unallocated' | 'backing';

export function allocationMap(image: Qcow2Image, l1: L1Table, cells: number, virtualSize = image.virtualSize, job: JobContext = silentJob): AllocationMap {
  if (!Number.isInteger(cells) || cells < 1 || cells > MAX_CELLS) throw new Qcow2Error('INVALID_ARGUMENT', `The map needs 1 to ${MAX_CELLS} cells, not ${cells}`);
  const clusterBytes = image.clusterBytes;
  const clusters = Math.ceil(virtualSize / clusterBytes);
  const cellBytes = Math.max(1, Math.ceil(clusters / cells)) * clusterBytes;
  const cellCount = Math.ceil(virtualSize / cellBytes);
  const map: AllocationMap = {
    virtualSize,
    clusterSize: clusterBytes,
    cellBytes,
    cellCount,
    data: new Array<number>(cellCount).fill(0),
    zero: new Array<number>(cellCount).fill(0),
    compressed: new Array<number>(cellCount).fill(0),
    unallocated: new Array<number>(cellCount).fill(0),
    backing: new Array<number>(cellCount).fill(0),
  };
  const count = (state: CellState, start: number, length: number): void => addToCells(map[state], cellBytes, start, length);
  for (let start = 0; start < virtualSize; start += STEP_BYTES) {
    job.throwIfCancelled();
    job.progress('mapping', start, virtualSize, 'bytes');
    const end = Math.min(virtualSize, start + STEP_BYTES);
    visitLayerRuns(image, l1, start, end, (guestOffset, length, kind) => {
      if (kind !== 'unallocated') return count(stateOf(kind), guestOffset, length);
      if (image.backing === null) return count('unallocated', guestOffset, length);
      visitBackingPresence(image.backing, guestOffset, guestOffset + length, (from, bytes, present) => count(present ? 'backing' : 'unallocated', from, bytes));
    });
  }
  job.progress('mapping', virtualSize, virtualSize, 'bytes');
  return map;
}

function stateOf(kind: Exclude<RunKind, 'unallocated'>): CellState {
  return kind;
}

/** Adds `length` bytes starting at guest `start` to the cells they fall in. */
function addToCells(counts: number[], cellBytes: number, start: number, length: number): void {
  let position = start;
  const end = start + length;
  while (position < end) {
    const cell = Math.floor(position / cellBytes);
    const cellEnd = Math.min(end, (cell + 1) * cellBytes);
    counts[cell] = (counts[cell] ?? 0) + (cellEnd - position);
    position = cellEnd;
  }
}

/** Splits [start, end) into what some layer of the chain below provides and what nothing does. */
function visitBackingPresence(reader: GuestReader, start: number, end: number, visit: (start: number, length: number, present: boolean) => void): void {
  const layerEnd = Math.max(start, Math.min(end, layerLength(reader)));
  if (reader instanceof RawImage) {
    if (layerEnd > start) visit(start, layerEnd - start, true);
  } else if (reader instanceof Qcow2Image) {
    const image = reader;
    visitLayerRuns(image, image.l1, start, layerEnd, (guestOffset, length, kind) => {
      if (kind !== 'unallocated') visit(guestOffset, length, true);
      else if (image.backing === null) visit(guestOffset, length, false);
      else visitBackingPresence(image.backing, guestOffset, guestOffset + length, visit);
    });
  } else {
    throw new Qcow2Error('INTERNAL', 'cannot map a backing file of an unknown kind');
  }
  if (layerEnd < end) visit(layerEnd, end - layerEnd, false);
}

export interface AllocationMapArgs {
  /** A snapshot (SnapshotRef: a name or id, or the app's id and name); the current state when absent. */
  snapshot?: SnapshotRef;
  cells: number;
}

/** The job behind `image.map`: opens the image read-only and maps the current state or a snapshot. */
export function readAllocationMap(filePath: string, args: AllocationMapArgs, job: JobContext = silentJob): AllocationMap {
  const image = Qcow2Image.open(filePath, { readOnly: true });
  try {
    if (args.snapshot === undefined) return allocationMap(image, image.l1, args.cells, image.virtualSize, job);
    const snapshot = findSnapshot(image, args.snapshot);
    return allocationMap(image, image.loadSnapshotL1(snapshot), args.cells, snapshot.diskSize ?? image.virtualSize, job);
  } finally {
    image.close();
  }
}
