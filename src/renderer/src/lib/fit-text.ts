/**
 * Shortens a label with an ellipsis to fit a width in pixels, measured in its font (SVG text has no
 * text-overflow). A count of characters let wide glyphs ("xxxx…", "WWWW…") run past the tree's
 * node highlight (UI audit 12). Where no canvas can measure (tests without one), `fallbackChars`.
 */
export type MeasureText = (text: string) => number;

export function fitText(text: string, maxWidth: number, measure: MeasureText | null, fallbackChars: number): string {
  if (measure === null) return text.length > fallbackChars ? `${text.slice(0, fallbackChars - 1)}…` : text;
  if (measure(text) <= maxWidth) return text;
  // The longest prefix that fits with the ellipsis (by code point, so a surrogate pair is never split).
  const points = Array.from(text);
  let low = 0;
  let high = points.length;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if (measure(`${points.slice(0, middle).join('')}…`) <= maxWidth) low = middle;
    else high = middle - 1;
  }
  return `${points.slice(0, low).join('')}…`;
}

/** A measure in `font` (CSS shorthand) through a 2D canvas, cached per text; null where there is no canvas. */
export function canvasMeasure(font: string): MeasureText | null {
  const context = typeof document === 'undefined' ? null : document.createElement('canvas').getContext?.('2d');
  if (!context) return null;
  context.font = font;
  const widths = new Map<string, number>();
  return (text) => {
    let width = widths.get(text);
    if (width === undefined) {
      width = context.measureText(text).width;
      if (widths.size > 5000) widths.clear();
      widths.set(text, width);
    }
    return width;
  };
}
