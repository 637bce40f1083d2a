/**
 * A space figure as the tree, the card and the dialogs show it while the full tree is read: null is
 * "counting…" (the quick tree has none yet) or "not counted" (the read failed); a figure carried
 * over from the last read is shown as it was, marked as being recounted.
 */
import { formatBytes, formatBytesExact } from '../../../shared/format-units.ts';

export type FigureState = 'counted' | 'counting' | 'recounting' | 'uncounted';

export function figureState(bytes: number | null, counting: boolean): FigureState {
  if (bytes === null) return counting ? 'counting' : 'uncounted';
  return counting ? 'recounting' : 'counted';
}

export function figureText(bytes: number | null, counting: boolean): string {
  if (bytes === null) return counting ? 'counting…' : 'not counted';
  return formatBytes(bytes);
}

/** The exact figure, or what is happening to it, for a tooltip. */
export function figureTitle(bytes: number | null, counting: boolean): string {
  if (bytes === null) return counting ? 'Still counting: Cowbell is reading the disk’s mapping tables' : 'Not counted: the disk’s mapping tables could not be read';
  return counting ? `${formatBytesExact(bytes)} when last counted; counting again` : formatBytesExact(bytes);
}
