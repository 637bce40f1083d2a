import { describe, expect, it } from 'vitest';
import type { AllocationMap } from '../../src/shared/qcow2/model.ts';
import {
  bytesWithin,
  dominantState,
  mapSummary,
  parseColour,
  squareColour,
  squaresForRange,
  squaresTouched,
  type MapPalette,
} from '../../src/renderer/src/lib/map-cells.ts';

const palette: MapPalette = {
  data: [0, 0, 200],
  compressed: [100, 0, 100],
  zero: [0, 200, 0],
  backing: [200, 100, 0],
  unallocated: [240, 240, 240],
};

/** Four 1 MiB cells: all data, all unallocated, half data half zero, compressed then backing. */
function map(): AllocationMap {
  const M = 1024 * 1024;
  return {
    virtualSize: 4 * M,
    clusterSize: 65536,
    cellBytes: M,
    cellCount: 4,
    data: [M, 0, M / 2, 0],
    zero: [0, 0, M / 2, 0],
    compressed: [0, 0, 0, M / 4],
    unallocated: [0, M, 0, 0],
    backing: [0, 0, 0, (3 * M) / 4],
  };
}

describe('allocation map colouring', () => {
  it('gives a cell wholly in one state that state’s colour', () => {
    const squares = squaresForRange(map(), 0, 4 * 1024 * 1024, 100);
    expect(squares).toHaveLength(4);
    expect(squareColour(squares[0]!, palette)).toEqual([0, 0, 200]);
    expect(squareColour(squares[1]!, palette)).toEqual([240, 240, 240]);
  });

  it('mixes the colours of a cell in several states by their bytes', () => {
    const squares = squaresForRange(map(), 0, 4 * 1024 * 1024, 100);
    expect(squareColour(squares[2]!, palette)).toEqual([0, 100, 100]);
    expect(squareColour(squares[3]!, palette)).toEqual([175, 75, 25]);
    expect(dominantState(squares[3]!)).toBe('backing');
  });

  it('groups cells into squares when there are more cells than room, keeping every byte', () => {
    const squares = squaresForRange(map(), 0, 4 * 1024 * 1024, 2);
    expect(squares.map((square) => [square.start, square.end])).toEqual([
      [0, 2 * 1024 * 1024],
      [2 * 1024 * 1024, 4 * 1024 * 1024],
    ]);
    expect(squares[0]?.bytes).toMatchObject({ data: 1024 * 1024, unallocated: 1024 * 1024 });
    expect(squareColour(squares[0]!, palette)).toEqual([120, 120, 220]);
  });

  it('shows what a mostly empty square holds at a quarter of its colour at least, so the data of a huge sparse disk stays visible', () => {
    const GiB = 1024 * 1024 * 1024;
    const square = { start: 0, end: 3 * GiB, bytes: { data: 1024 * 1024, compressed: 0, zero: 0, backing: 0, unallocated: 3 * GiB - 1024 * 1024 } };
    expect(squareColour(square, palette)).toEqual([180, 180, 230]);
    // Held states keep their proportions among themselves.
    const mixed = { ...square, bytes: { ...square.bytes, data: 512 * 1024, zero: 512 * 1024 } };
    expect(squareColour(mixed, palette)).toEqual([180, 205, 205]);
    // Past the least share, bytes decide alone (half used looks half full, as above).
    const third = { ...square, bytes: { ...square.bytes, data: GiB, unallocated: 2 * GiB } };
    expect(squareColour(third, palette)).toEqual([160, 160, 227]);
  });

  it('shows only the cells of a zoomed range', () => {
    const squares = squaresForRange(map(), 2 * 1024 * 1024, 3 * 1024 * 1024, 100);
    expect(squares).toHaveLength(1);
    expect(squares[0]).toMatchObject({ start: 2 * 1024 * 1024, end: 3 * 1024 * 1024 });
  });

  it('marks the squares a diff range touches and counts the bytes inside each', () => {
    const squares = squaresForRange(map(), 0, 4 * 1024 * 1024, 100);
    const ranges = [
      { offset: 3 * 1024 * 1024 + 4096, length: 8192 },
      { offset: 0, length: 65536 },
    ];
    expect(squaresTouched(squares, ranges)).toEqual([true, false, false, true]);
    expect(bytesWithin(ranges, 3 * 1024 * 1024, 4 * 1024 * 1024)).toBe(8192);
  });

  it('reads theme colours written as hex or rgb()', () => {
    expect(parseColour('#2f6fd6')).toEqual([47, 111, 214]);
    expect(parseColour(' rgb(1, 2, 3) ')).toEqual([1, 2, 3]);
    expect(parseColour('var(--x)')).toBeNull();
  });
});

describe('the map in words (its text equivalent)', () => {
  it('gives each state’s share of the bytes shown, largest first, and never rounds held data away', () => {
    const squares = squaresForRange(map(), 0, 4 * 1024 * 1024, 4);
    // 1.5 MiB data, 1 MiB unallocated, 0.75 MiB backing, 0.5 MiB zero, 0.25 MiB compressed of 4 MiB.
    expect(mapSummary(squares)).toBe('Data 38 %, Unallocated 25 %, From backing file 19 %, Zeroes 13 %, Compressed 6 %');
    const sparse = squaresForRange({ ...map(), data: [1024, 0, 0, 0], zero: [0, 0, 0, 0], compressed: [0, 0, 0, 0], backing: [0, 0, 0, 0], unallocated: [1024 * 1024 - 1024, 1024 * 1024, 1024 * 1024, 1024 * 1024] }, 0, 4 * 1024 * 1024, 4);
    expect(mapSummary(sparse)).toBe('Unallocated 100 %, Data under 1 %');
    expect(mapSummary([])).toBe('nothing mapped');
  });
});
