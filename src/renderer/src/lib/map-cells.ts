/**
 * The allocation map as squares to paint: the engine's cells (AllocationMap) for a byte range of the
 * guest disk, grouped into at most `maxSquares` squares, each coloured by the mix of states it holds.
 * Pure functions, so the colouring is tested without a canvas.
 */
import type { AllocationMap } from '../../../shared/qcow2/model.ts';

export const CELL_STATES = ['data', 'compressed', 'zero', 'backing', 'unallocated'] as const;
export type CellState = (typeof CELL_STATES)[number];

export type Rgb = readonly [number, number, number];
export type MapPalette = Record<CellState, Rgb>;

export const STATE_LABELS: Record<CellState, string> = {
  data: 'Data',
  compressed: 'Compressed',
  zero: 'Zeroes',
  backing: 'From backing file',
  unallocated: 'Unallocated',
};

export interface MapSquare {
  /** Guest byte range [start, end). */
  start: number;
  end: number;
  bytes: Record<CellState, number>;
}

/** Groups the cells covering guest bytes [start, end) into at most `maxSquares` squares of whole cells. */
export function squaresForRange(map: AllocationMap, start: number, end: number, maxSquares: number): MapSquare[] {
  if (map.cellCount === 0 || end <= start || maxSquares < 1) return [];
  const firstCell = Math.max(0, Math.floor(start / map.cellBytes));
  const lastCell = Math.min(map.cellCount, Math.ceil(end / map.cellBytes));
  const cells = lastCell - firstCell;
  if (cells <= 0) return [];
  const cellsPerSquare = Math.ceil(cells / maxSquares);
  const squares: MapSquare[] = [];
  for (let cell = firstCell; cell < lastCell; cell += cellsPerSquare) {
    const stop = Math.min(lastCell, cell + cellsPerSquare);
    const bytes = { data: 0, compressed: 0, zero: 0, backing: 0, unallocated: 0 };
    for (let index = cell; index < stop; index++) {
      for (const state of CELL_STATES) bytes[state] += map[state][index] ?? 0;
    }
    squares.push({ start: cell * map.cellBytes, end: Math.min(map.virtualSize, stop * map.cellBytes), bytes });
  }
  return squares;
}

/**
 * The least share of a square's colour that what it holds takes, however little that is: a square
 * of a huge sparse disk (gigabytes each) holding one megabyte must not look empty.
 */
export const LEAST_HELD_SHARE = 0.25;

/**
 * The square's colour: the state colours mixed in proportion to their bytes, so half-used cells
 * look half full — except that what a mostly unallocated square holds shows at LEAST_HELD_SHARE.
 */
export function squareColour(square: MapSquare, palette: MapPalette): Rgb {
  const total = CELL_STATES.reduce((sum, state) => sum + square.bytes[state], 0);
  if (total === 0) return palette.unallocated;
  const held = total - square.bytes.unallocated;
  const heldShare = held / total;
  // Scales the held states up (and unallocated down) so that together they take the least share.
  const heldScale = held > 0 && heldShare < LEAST_HELD_SHARE ? LEAST_HELD_SHARE / heldShare : 1;
  const unallocatedScale = heldScale === 1 ? 1 : (1 - LEAST_HELD_SHARE) / (1 - heldShare);
  const mixed = [0, 0, 0];
  for (const state of CELL_STATES) {
    const weight = (square.bytes[state] / total) * (state === 'unallocated' ? unallocatedScale : heldScale);
    if (weight === 0) continue;
    for (let channel = 0; channel < 3; channel++) mixed[channel] = (mixed[channel] ?? 0) + (palette[state][channel] ?? 0) * weight;
  }
  return [Math.round(mixed[0] ?? 0), Math.round(mixed[1] ?? 0), Math.round(mixed[2] ?? 0)];
}

/** The state holding most of the square's bytes (ties go to the earlier state in CELL_STATES). */
export function dominantState(square: MapSquare): CellState {
  let best: CellState = 'unallocated';
  let bestBytes = -1;
  for (const state of CELL_STATES) {
    if (square.bytes[state] > bestBytes) {
      best = state;
      bestBytes = square.bytes[state];
    }
  }
  return best;
}

/** For each square, whether any of the (sorted or unsorted) guest ranges overlaps it. */
export function squaresTouched(squares: readonly MapSquare[], ranges: readonly { offset: number; length: number }[]): boolean[] {
  const sorted = [...ranges].filter((range) => range.length > 0).sort((a, b) => a.offset - b.offset);
  const touched = new Array<boolean>(squares.length).fill(false);
  let rangeIndex = 0;
  for (const [index, square] of squares.entries()) {
    while (rangeIndex < sorted.length && (sorted[rangeIndex]?.offset ?? 0) + (sorted[rangeIndex]?.length ?? 0) <= square.start) rangeIndex++;
    const range = sorted[rangeIndex];
    touched[index] = range !== undefined && range.offset < square.end;
  }
  return touched;
}

/** Bytes of the ranges that fall inside [start, end). */
export function bytesWithin(ranges: readonly { offset: number; length: number }[], start: number, end: number): number {
  let bytes = 0;
  for (const range of ranges) bytes += Math.max(0, Math.min(end, range.offset + range.length) - Math.max(start, range.offset));
  return bytes;
}

/** "#2f6fd6" or "rgb(47, 111, 214)" → [47, 111, 214]; anything else → null. */
export function parseColour(text: string): Rgb | null {
  const value = text.trim();
  const hex = /^#([0-9a-f]{6})$/i.exec(value);
  if (hex?.[1]) {
    const number = Number.parseInt(hex[1], 16);
    return [(number >> 16) & 255, (number >> 8) & 255, number & 255];
  }
  const rgb = /^rgba?\(\s*(\d+)[,\s]+(\d+)[,\s]+(\d+)/i.exec(value);
  if (rgb) return [Number(rgb[1]), Number(rgb[2]), Number(rgb[3])];
  return null;
}

/** `0x1f400000`-style offsets for the hover readout, as qemu-img map prints them. */
export function formatOffset(offset: number): string {
  return `0x${offset.toString(16)}`;
}

/**
 * The squares' states in words, for a screen reader (the map itself is colours): each state's share
 * of the bytes shown, largest first, as "Data 40 %, Unallocated 60 %". A state under half a percent
 * that holds anything reads "under 1 %", so no held data vanishes from the words.
 */
export function mapSummary(squares: readonly MapSquare[]): string {
  const totals = { data: 0, compressed: 0, zero: 0, backing: 0, unallocated: 0 };
  for (const square of squares) for (const state of CELL_STATES) totals[state] += square.bytes[state];
  const all = CELL_STATES.reduce((sum, state) => sum + totals[state], 0);
  if (all === 0) return 'nothing mapped';
  return CELL_STATES.filter((state) => totals[state] > 0)
    .sort((a, b) => totals[b] - totals[a])
    .map((state) => {
      const percent = Math.round((100 * totals[state]) / all);
      return `${STATE_LABELS[state]} ${percent === 0 ? 'under 1' : percent} %`;
    })
    .join(', ');
}
