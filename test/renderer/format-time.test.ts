import { describe, expect, it } from 'vitest';
import { formatDate, formatDateShort } from '../../src/renderer/src/lib/format-time.ts';

describe('formatDateShort', () => {
  it('drops the year of this year’s date and the time of an older one', () => {
    const now = new Date(2026, 11, 6, 12, 0);
    const thisYear = new Date(2026, 11, 6, 12, 43).getTime() / 1000;
    const lastYear = new Date(2025, 10, 25, 15, 48).getTime() / 1000;
    expect(formatDateShort(thisYear, now)).not.toContain('2026');
    expect(formatDateShort(thisYear, now)).toContain('43');
    expect(formatDateShort(lastYear, now)).toContain('2025');
    expect(formatDateShort(lastYear, now)).not.toContain('48');
    expect(formatDateShort(thisYear, now).length).toBeLessThan(formatDate(thisYear).length);
  });
});
