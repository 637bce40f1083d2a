import { describe, expect, it } from 'vitest';
import { wheelPan } from '../../src/renderer/src/lib/view-transform.ts';

// A scene 400 px tall at scale 1 in a 300 px viewport, its top at the viewport's top.
const box = { minX: 0, minY: 0, maxX: 200, maxY: 400 };
const view = { scale: 1, x: 50, y: 0 };

describe('wheelPan', () => {
  it('pans while scene lies beyond the viewport that way, no further than its edge and the margin', () => {
    expect(wheelPan(view, box, 300, 300, 0, 40)).toEqual({ scale: 1, x: 50, y: -40 });
    // 400 − (300 − 24) = 124 px left below.
    expect(wheelPan(view, box, 300, 300, 0, 500)).toEqual({ scale: 1, x: 50, y: -124 });
    expect(wheelPan({ ...view, y: -124 }, box, 300, 300, 0, -30)).toEqual({ scale: 1, x: 50, y: -94 });
  });

  it('gives null where nothing is left that way, so the page scrolls instead', () => {
    expect(wheelPan({ ...view, y: -124 }, box, 300, 300, 0, 40)).toBeNull();
    expect(wheelPan({ ...view, y: 24 }, box, 300, 300, 0, -40)).toBeNull();
    // All of the scene's 200 px width is in view: a sideways wheel has nothing to bring in.
    expect(wheelPan(view, box, 300, 300, 40, 0)).toBeNull();
    // A tree dragged out of sight below comes back up with the wheel; it cannot be wheeled further away.
    expect(wheelPan({ ...view, y: 400 }, box, 300, 300, 0, 40)).toEqual({ scale: 1, x: 50, y: 360 });
    expect(wheelPan({ ...view, y: 400 }, box, 300, 300, 0, -40)).toBeNull();
  });

  it('counts the scale', () => {
    // At scale 0.5 the scene is 200 px tall: it fits, nothing to pan.
    expect(wheelPan({ scale: 0.5, x: 0, y: 24 }, box, 300, 300, 0, 40)).toBeNull();
  });
});
