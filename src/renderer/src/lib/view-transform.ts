/** Pan and zoom for the tree: a scale and a translation, and the arithmetic to fit, zoom at a point and reveal a node. */

export interface ViewTransform {
  scale: number;
  x: number;
  y: number;
}

export interface Box {
  minX: number;
  minY: number;
  maxX: number;
  maxY: number;
}

export const MIN_SCALE = 0.05;
export const MAX_SCALE = 2.5;

export function clampScale(scale: number): number {
  return Math.min(MAX_SCALE, Math.max(MIN_SCALE, scale));
}

/** The whole box inside a viewport of `width` × `height`, centred, never enlarged past 1:1. */
export function fitBox(box: Box, width: number, height: number, padding = 32): ViewTransform {
  const boxWidth = Math.max(1, box.maxX - box.minX);
  const boxHeight = Math.max(1, box.maxY - box.minY);
  const scale = clampScale(Math.min(1, (width - 2 * padding) / boxWidth, (height - 2 * padding) / boxHeight));
  return {
    scale,
    x: (width - boxWidth * scale) / 2 - box.minX * scale,
    y: (height - boxHeight * scale) / 2 - box.minY * scale,
  };
}

/** Zooms by `factor` keeping the scene point under (px, py) where it is. */
export function zoomAt(view: ViewTransform, factor: number, px: number, py: number): ViewTransform {
  const scale = clampScale(view.scale * factor);
  const applied = scale / view.scale;
  return { scale, x: px - (px - view.x) * applied, y: py - (py - view.y) * applied };
}

/** Centres the scene point (sx, sy) at the viewport's (px, py) at `scale`. */
export function centreOn(sx: number, sy: number, px: number, py: number, scale: number): ViewTransform {
  return { scale, x: px - sx * scale, y: py - sy * scale };
}

/** The least pan that brings the scene box fully into the viewport (with a margin); unchanged if it is already. */
export function reveal(view: ViewTransform, box: Box, width: number, height: number, margin = 24): ViewTransform {
  const left = box.minX * view.scale + view.x;
  const right = box.maxX * view.scale + view.x;
  const top = box.minY * view.scale + view.y;
  const bottom = box.maxY * view.scale + view.y;
  let dx = 0;
  let dy = 0;
  if (left < margin) dx = margin - left;
  else if (right > width - margin) dx = Math.max(margin - left, width - margin - right);
  if (top < margin) dy = margin - top;
  else if (bottom > height - margin) dy = Math.max(margin - top, height - margin - bottom);
  return dx === 0 && dy === 0 ? view : { ...view, x: view.x + dx, y: view.y + dy };
}

/** The CSS transform for a layer whose top-left corner is the scene point (originX, originY). */
export function cssTransform(view: ViewTransform, originX: number, originY: number): string {
  const x = view.x + originX * view.scale;
  const y = view.y + originY * view.scale;
  return `translate(${x.toFixed(2)}px, ${y.toFixed(2)}px) scale(${view.scale.toFixed(4)})`;
}

/**
 * The wheel's pan of (dx, dy) screen pixels (positive: towards what lies right of and below the
 * viewport), as far as there is scene left to bring into view on each axis (with a margin), as a
 * scroll box scrolls; null when neither axis has any, so the wheel can scroll the page around
 * the tree instead (a small window scrolls its tab as a whole).
 */
export function wheelPan(view: ViewTransform, box: Box, width: number, height: number, dx: number, dy: number, margin = 24): ViewTransform | null {
  const moveX = axisRoom(box.minX * view.scale + view.x, box.maxX * view.scale + view.x, width, dx, margin);
  const moveY = axisRoom(box.minY * view.scale + view.y, box.maxY * view.scale + view.y, height, dy, margin);
  return moveX === 0 && moveY === 0 ? null : { ...view, x: view.x - moveX, y: view.y - moveY };
}

/** How far (signed as `delta`) the scene spanning [start, end] on screen may move along one axis of `length`. */
function axisRoom(start: number, end: number, length: number, delta: number, margin: number): number {
  if (delta > 0) return Math.min(delta, Math.max(0, end - (length - margin)));
  if (delta < 0) return -Math.min(-delta, Math.max(0, margin - start));
  return 0;
}
