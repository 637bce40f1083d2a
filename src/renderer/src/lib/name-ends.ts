/**
 * A long file name split for an ellipsis in its middle: the head may be cut (CSS text-overflow),
 * the tail always shows. Names in one folder tend to differ at their ends (a number, a version, an
 * extension): cut at the end, a narrow Files panel showed sixty rows of "a-file-with-a-ra…" alike.
 */
export const NAME_TAIL_CHARS = 10;

export function nameEnds(name: string): { head: string; tail: string } {
  const points = Array.from(name);
  if (points.length <= NAME_TAIL_CHARS + 4) return { head: name, tail: '' };
  let split = points.length - NAME_TAIL_CHARS;
  // A combining mark stays with the character it marks.
  while (split > 1 && /^\p{M}$/u.test(points[split] ?? '')) split -= 1;
  return { head: points.slice(0, split).join(''), tail: points.slice(split).join('') };
}
