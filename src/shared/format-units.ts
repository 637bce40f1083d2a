/**
 * Byte counts for people, in binary units (KiB = 1024 B), the way qemu-img prints them.
 * Pure: no Node or DOM imports, shared by the renderer and the CLI.
 */

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'] as const;

export interface FormatBytesOptions {
  /** Significant digits for values of 1 KiB and more (qemu-img uses 3). */
  significantDigits?: number;
}

/** `1073741824` → `"1 GiB"`, `200704` → `"196 KiB"`, `1610612736` → `"1.5 GiB"`, `512` → `"512 B"`. */
export function formatBytes(bytes: number, options: FormatBytesOptions = {}): string {
  if (!Number.isFinite(bytes)) return '—';
  const sign = bytes < 0 ? '−' : '';
  let magnitude = Math.abs(bytes);
  let unitIndex = 0;
  while (magnitude >= 1024 && unitIndex < BINARY_UNITS.length - 1) {
    magnitude /= 1024;
    unitIndex += 1;
  }
  const unit = BINARY_UNITS[unitIndex] ?? 'B';
  if (unitIndex === 0) return `${sign}${Math.round(magnitude)} ${unit}`;
  const digits = options.significantDigits ?? 3;
  let shown = Number(magnitude.toPrecision(digits));
  // With 4+ digits, rounding can carry into the next unit: 1023.99 KiB is "1 MiB", not "1024 KiB".
  if (shown >= 1024 && unitIndex < BINARY_UNITS.length - 1) {
    shown = Number((shown / 1024).toPrecision(digits));
    return `${sign}${shown} ${BINARY_UNITS[unitIndex + 1] ?? unit}`;
  }
  return `${sign}${shown} ${unit}`;
}

/** `1073741824` → `"1,073,741,824 bytes"`: the exact figure, for tooltips and details. */
export function formatBytesExact(bytes: number): string {
  if (!Number.isFinite(bytes)) return '—';
  const grouped = Math.trunc(bytes)
    .toString()
    .replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${grouped} ${Math.abs(bytes) === 1 ? 'byte' : 'bytes'}`;
}

const SUFFIX_SHIFT: Record<string, number> = {
  k: 10,
  m: 20,
  g: 30,
  t: 40,
  p: 50,
  e: 60,
};

/**
 * `"10G"`, `"10 GiB"`, `"512M"`, `"1.5T"`, `"65536"` → bytes, as qemu-img reads sizes
 * (every suffix is binary). Returns `null` for anything else, or a result that is not a
 * whole number of bytes or exceeds Number.MAX_SAFE_INTEGER.
 */
export function parseBytes(text: string): number | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(?:([kmgtpe])(?:i?b)?|b)?\s*$/i.exec(text);
  if (!match) return null;
  const [, numberText = '', suffix] = match;
  const shift = suffix === undefined ? 0 : SUFFIX_SHIFT[suffix.toLowerCase()];
  if (shift === undefined) return null;
  const bytes = Number(numberText) * 2 ** shift;
  if (!Number.isSafeInteger(bytes)) return null;
  return bytes;
}

/**
 * A fraction as a percentage for people: `0.5` → `"50%"`, `0.0123` → `"1.2%"`, `0.00001` → `"< 0.1%"`.
 * Only a whole shows as 100%: `0.995` → `"99.5%"`, `0.99999` → `"> 99.9%"` (a file 99.5% smaller is not empty).
 */
export function formatPercent(fraction: number): string {
  if (!Number.isFinite(fraction)) return '—';
  const percent = fraction * 100;
  if (percent === 0) return '0%';
  if (percent < 0.1) return '< 0.1%';
  if (percent < 10) return `${Number(percent.toFixed(1))}%`;
  if (percent < 100 && Math.round(percent) === 100) return percent < 99.95 ? `${percent.toFixed(1)}%` : '> 99.9%';
  return `${Math.round(percent)}%`;
}

/** A file's size change in words: "45% smaller", "12% larger", "the same size". */
export function sizeChange(beforeBytes: number, afterBytes: number): string {
  if (beforeBytes <= 0 || afterBytes === beforeBytes) return 'the same size';
  const change = (beforeBytes - afterBytes) / beforeBytes;
  return change > 0 ? `${formatPercent(change)} smaller` : `${formatPercent(-change)} larger`;
}
