import { describe, expect, it } from 'vitest';
import { formatBytes, formatBytesExact, formatPercent, parseBytes, sizeChange } from '../../src/shared/format-units.ts';

describe('formatBytes', () => {
  it('prints whole binary units without decimals, as qemu-img does', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1024)).toBe('1 KiB');
    expect(formatBytes(65536)).toBe('64 KiB');
    expect(formatBytes(2 * 1024 ** 2)).toBe('2 MiB');
    expect(formatBytes(1024 ** 3)).toBe('1 GiB');
    expect(formatBytes(10 * 1024 ** 4)).toBe('10 TiB');
  });

  it('keeps three significant digits', () => {
    expect(formatBytes(1.5 * 1024 ** 3)).toBe('1.5 GiB');
    expect(formatBytes(200704)).toBe('196 KiB');
    expect(formatBytes(1.25 * 1024 ** 2)).toBe('1.25 MiB');
    expect(formatBytes(1023 * 1024)).toBe('1020 KiB');
  });

  it('carries into the next unit when rounding reaches 1024', () => {
    expect(formatBytes(1023.99 * 1024, { significantDigits: 4 })).toBe('1 MiB');
  });

  it('handles negative and non-finite values without throwing', () => {
    expect(formatBytes(-2048)).toBe('−2 KiB');
    expect(formatBytes(Number.NaN)).toBe('—');
  });
});

describe('formatBytesExact', () => {
  it('groups digits and names the unit', () => {
    expect(formatBytesExact(1073741824)).toBe('1,073,741,824 bytes');
    expect(formatBytesExact(1)).toBe('1 byte');
    expect(formatBytesExact(0)).toBe('0 bytes');
  });
});

describe('parseBytes', () => {
  it('reads qemu-img style sizes, every suffix binary', () => {
    expect(parseBytes('65536')).toBe(65536);
    expect(parseBytes('64k')).toBe(65536);
    expect(parseBytes('10G')).toBe(10 * 1024 ** 3);
    expect(parseBytes('10 GiB')).toBe(10 * 1024 ** 3);
    expect(parseBytes('1.5T')).toBe(1.5 * 1024 ** 4);
    expect(parseBytes('512 B')).toBe(512);
  });

  it('refuses what is not a size', () => {
    expect(parseBytes('')).toBeNull();
    expect(parseBytes('ten gigs')).toBeNull();
    expect(parseBytes('-1G')).toBeNull();
    expect(parseBytes('1.5')).toBeNull();
    expect(parseBytes('10bb')).toBeNull();
    expect(parseBytes('100000E')).toBeNull();
  });
});

describe('formatPercent', () => {
  it('shows small shares with a decimal and tiny ones as "< 0.1%"', () => {
    expect(formatPercent(0)).toBe('0%');
    expect(formatPercent(0.00001)).toBe('< 0.1%');
    expect(formatPercent(0.0123)).toBe('1.2%');
    expect(formatPercent(0.5)).toBe('50%');
    expect(formatPercent(1.25)).toBe('125%');
  });

  it('shows 100% only for a whole: a share that rounds up to it keeps a decimal, or says "> 99.9%"', () => {
    expect(formatPercent(1)).toBe('100%');
    expect(formatPercent(0.994)).toBe('99%');
    expect(formatPercent(0.995)).toBe('99.5%');
    expect(formatPercent(0.9994)).toBe('99.9%');
    expect(formatPercent(0.99951)).toBe('> 99.9%');
    expect(formatPercent(1.004)).toBe('100%');
  });
});

describe('sizeChange', () => {
  it('puts a size change in words: smaller, larger, the same', () => {
    expect(sizeChange(100, 40)).toBe('60% smaller');
    expect(sizeChange(100, 112)).toBe('12% larger');
    expect(sizeChange(100, 100)).toBe('the same size');
    expect(sizeChange(0, 10)).toBe('the same size');
  });

  it('never calls a file that is left 100% smaller, nor a small change 0%', () => {
    // 4.02 GiB of patterned data compressed to 18.9 MiB, as a compress of a real disk gave.
    expect(sizeChange(4_316_000_000, 19_857_408)).toBe('99.5% smaller');
    expect(sizeChange(1_000_000, 1)).toBe('> 99.9% smaller');
    expect(sizeChange(1000, 997)).toBe('0.3% smaller');
    expect(sizeChange(1000, 1000.5)).toBe('< 0.1% larger');
  });
});
