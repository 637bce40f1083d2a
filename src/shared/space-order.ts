/**
 * The order in which the app's chart and `cowbell usage` list states by space: the most bytes held
 * by that state alone first (what deleting it would free), ties by shared bytes.
 */
export interface StateSpace {
  exclusiveBytes: number;
  sharedBytes: number;
}

export function biggestOwnFirst(a: StateSpace, b: StateSpace): number {
  return b.exclusiveBytes - a.exclusiveBytes || b.sharedBytes - a.sharedBytes;
}
