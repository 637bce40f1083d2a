/** FAT dates and times as Linux's vfat reads them (fs/fat/misc.c): valid ones as written, out-of-range fields by the same arithmetic. */
import { describe, expect, it } from 'vitest';
import { fatTimeMs } from '../../../src/shared/qcow2/files/fat/folder-entries.ts';

const date = (year: number, month: number, day: number): number => ((year - 1980) << 9) | (month << 5) | day;
const time = (hours: number, minutes: number, twoSeconds: number): number => (hours << 11) | (minutes << 5) | twoSeconds;

describe('fatTimeMs', () => {
  it('reads valid dates as the wall-clock time written, across leap years and 2100 (not one)', () => {
    expect(fatTimeMs(date(1980, 1, 1), 0)).toBe(Date.UTC(1980, 0, 1));
    expect(fatTimeMs(date(2020, 2, 29), time(13, 45, 15))).toBe(Date.UTC(2020, 1, 29, 13, 45, 30));
    expect(fatTimeMs(date(2024, 3, 1), 0)).toBe(Date.UTC(2024, 2, 1));
    expect(fatTimeMs(date(2100, 3, 1), 0)).toBe(Date.UTC(2100, 2, 1));
    expect(fatTimeMs(date(2104, 3, 1), 0)).toBe(Date.UTC(2104, 2, 1));
    expect(fatTimeMs(date(2107, 12, 31), time(23, 59, 29))).toBe(Date.UTC(2107, 11, 31, 23, 59, 58));
  });

  it('reads out-of-range fields as a mount shows them, never as no time (a restored file got the time of the copy: files audit 10)', () => {
    // All zero (cameras, embedded writers): 1980-01-01 00:00.
    expect(fatTimeMs(0, 0)).toBe(Date.UTC(1980, 0, 1));
    // Day 0 and month 0 as 1.
    expect(fatTimeMs(date(2021, 6, 0), 0)).toBe(Date.UTC(2021, 5, 1));
    expect(fatTimeMs(date(2021, 0, 9), 0)).toBe(Date.UTC(2021, 0, 9));
    // February 30: a day past the last (March 1 in a leap year, March 2 in another).
    expect(fatTimeMs(date(2020, 2, 30), 0)).toBe(Date.UTC(2020, 2, 1));
    expect(fatTimeMs(date(2021, 2, 30), 0)).toBe(Date.UTC(2021, 2, 2));
    // A seconds field of 31 (62 s) and 25 o'clock carry over.
    expect(fatTimeMs(date(2021, 6, 1), time(0, 0, 31))).toBe(Date.UTC(2021, 5, 1, 0, 1, 2));
    expect(fatTimeMs(date(2021, 6, 1), time(25, 0, 0))).toBe(Date.UTC(2021, 5, 2, 1));
  });
});
