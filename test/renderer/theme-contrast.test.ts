/**
 * The theme's colours against WCAG 2.x AA, in both themes: text 4.5:1 on every surface it sits on,
 * white button text on the button fills 4.5:1, field borders and the tree's edges 3:1 (a field's
 * border is the only sign of where to type). Read from base.css itself, so a colour changed there
 * is checked here.
 */
import { describe, expect, it } from 'vitest';
import css from '../../src/renderer/src/styles/base.css?raw';

function variables(block: string): Map<string, string> {
  return new Map([...block.matchAll(/--([a-z0-9-]+):\s*(#[0-9a-f]{6})\s*;/gi)].map((match) => [match[1] ?? '', (match[2] ?? '').toLowerCase()]));
}

const rootBlock = /:root\s*\{([\s\S]*?)\n\}/.exec(css)?.[1] ?? '';
const darkBlock = /@media \(prefers-color-scheme: dark\)\s*\{\s*:root\s*\{([\s\S]*?)\n {2}\}/.exec(css)?.[1] ?? '';
const light = variables(rootBlock);
const dark = new Map([...light, ...variables(darkBlock)]);

function luminance(hex: string): number {
  const channels = [1, 3, 5].map((at) => Number.parseInt(hex.slice(at, at + 2), 16) / 255);
  const [r = 0, g = 0, b = 0] = channels.map((value) => (value <= 0.03928 ? value / 12.92 : ((value + 0.055) / 1.055) ** 2.4));
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

function contrast(a: string, b: string): number {
  const [high, low] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return ((high ?? 0) + 0.05) / ((low ?? 0) + 0.05);
}

const SURFACES = ['window', 'sidebar', 'surface', 'surface-sunken'];

describe.each([
  ['light', light],
  ['dark', dark],
])('the %s theme', (_name, theme) => {
  const colour = (name: string): string => {
    const value = theme.get(name);
    if (value === undefined) throw new Error(`--${name} is not a #rrggbb colour in base.css`);
    return value;
  };

  it('has its colours (the parse found them)', () => {
    expect(theme.size).toBeGreaterThan(20);
    if (theme === dark) expect(colour('surface')).not.toBe(light.get('surface'));
  });

  it.each(['text', 'text-secondary', 'text-tertiary'])('--%s reads at 4.5:1 on every surface', (text) => {
    for (const surface of SURFACES) expect({ surface, ratio: contrast(colour(text), colour(surface)) }).toEqual({ surface, ratio: expect.toSatisfy((ratio: number) => ratio >= 4.5) });
  });

  // Status text: a disk that failed to open says why in the sidebar (UI audit: 4.42:1 there).
  it.each(['warning', 'danger'])('--%s text reads at 4.5:1 on every surface', (text) => {
    for (const surface of SURFACES) expect({ surface, ratio: contrast(colour(text), colour(surface)) }).toEqual({ surface, ratio: expect.toSatisfy((ratio: number) => ratio >= 4.5) });
  });

  // Accent-coloured headings sit on cards (the selected node's "You are here": 4.34:1 in the dark theme).
  it('--accent text reads at 4.5:1 on a card', () => {
    expect(contrast(colour('accent'), colour('surface'))).toBeGreaterThanOrEqual(4.5);
  });

  it.each(['accent-fill', 'danger-fill'])('white button text reads at 4.5:1 on --%s', (fill) => {
    expect(contrast(colour(fill), '#ffffff')).toBeGreaterThanOrEqual(4.5);
    expect(colour('accent-text')).toBe('#ffffff');
  });

  it('field borders and the tree’s edges stand at 3:1 against the surface they are drawn on', () => {
    expect(contrast(colour('field-border'), colour('surface'))).toBeGreaterThanOrEqual(3);
    expect(contrast(colour('tree-edge'), colour('surface'))).toBeGreaterThanOrEqual(3);
  });
});
