/**
 * The theme's colours as values canvas code can use (ECharts, the allocation map): read from the CSS
 * variables in base.css, and read again when the system switches between light and dark.
 */
import { onBeforeUnmount, ref, type Ref } from 'vue';
import type { ChartPalette } from '../lib/space-charts.ts';
import { CELL_STATES, parseColour, type MapPalette, type Rgb } from '../lib/map-cells.ts';

function variable(name: string, fallback: string): string {
  if (typeof getComputedStyle !== 'function') return fallback;
  const value = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return value === '' ? fallback : value;
}

export function readChartPalette(): ChartPalette {
  return {
    text: variable('--text', '#1d1d1f'),
    textSecondary: variable('--text-secondary', '#5e5e66'),
    grid: variable('--border', 'rgba(0,0,0,0.1)'),
    surface: variable('--surface', '#ffffff'),
    font: variable('--font-ui', 'system-ui, sans-serif'),
    virtual: variable('--space-virtual', '#c9ccd4'),
    data: variable('--space-data', '#2f6fd6'),
    shared: variable('--space-shared', '#9fbff0'),
    metadata: variable('--space-metadata', '#8e63ce'),
    leaked: variable('--space-leaked', '#c4314b'),
    free: variable('--space-free', '#d9dbe1'),
    unwritten: variable('--space-unwritten', '#9fd3b5'),
    current: variable('--space-current', '#e0823a'),
    highlight: variable('--text', '#1d1d1f'),
  };
}

const MAP_FALLBACK: MapPalette = {
  data: [47, 111, 214],
  compressed: [142, 99, 206],
  zero: [159, 211, 181],
  backing: [224, 165, 74],
  unallocated: [228, 230, 235],
};

export function readMapPalette(): { states: MapPalette; changed: Rgb; cursor: Rgb } {
  const states = { ...MAP_FALLBACK };
  for (const state of CELL_STATES) states[state] = parseColour(variable(`--map-${state}`, '')) ?? MAP_FALLBACK[state];
  return { states, changed: parseColour(variable('--map-changed', '')) ?? [214, 51, 108], cursor: parseColour(variable('--text', '')) ?? [29, 29, 31] };
}

/** A value read from the theme now and again whenever the colour scheme changes. */
export function useThemed<T>(read: () => T): Ref<T> {
  const value = ref(read()) as Ref<T>;
  const query = typeof matchMedia === 'function' ? matchMedia('(prefers-color-scheme: dark)') : null;
  const update = (): void => {
    value.value = read();
  };
  query?.addEventListener?.('change', update);
  onBeforeUnmount(() => query?.removeEventListener?.('change', update));
  return value;
}
