/** Widths for text tables as long as a guest folder can be. */

/**
 * The length of the longest text, 0 for none. A loop: Math.max(...lengths) passes each length as
 * an argument, and past ~120,000 rows (a large folder, a long files-diff) V8 throws
 * "Maximum call stack size exceeded".
 */
export function widest(texts: Iterable<string>): number {
  let width = 0;
  for (const text of texts) if (text.length > width) width = text.length;
  return width;
}
