import { describe, expect, it } from 'vitest';
import { fitText } from '../../src/renderer/src/lib/fit-text.ts';

// 10 px a character, 20 px a "W", 8 px the ellipsis.
const measure = (text: string): number => Array.from(text).reduce((width, character) => width + (character === 'W' ? 20 : character === '…' ? 8 : 10), 0);

describe('fitText', () => {
  it('keeps a label that fits', () => {
    expect(fitText('fresh install', 130, measure, 24)).toBe('fresh install');
  });

  it('cuts by width, not by count: wide glyphs lose more', () => {
    expect(fitText('x'.repeat(30), 100, measure, 24)).toBe(`${'x'.repeat(9)}…`);
    expect(fitText('W'.repeat(30), 100, measure, 24)).toBe(`${'W'.repeat(4)}…`);
    expect(measure(fitText('xW'.repeat(20), 100, measure, 24))).toBeLessThanOrEqual(100);
  });

  it('never splits a character made of two UTF-16 units', () => {
    expect(fitText('😀'.repeat(20), 50, measure, 24)).toBe(`${'😀'.repeat(4)}…`);
  });

  it('counts characters where nothing can measure', () => {
    expect(fitText('x'.repeat(30), 100, null, 24)).toBe(`${'x'.repeat(23)}…`);
    expect(fitText('short', 100, null, 24)).toBe('short');
  });
});
