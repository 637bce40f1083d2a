/**
 * How far apart the L2 tables several states name at one L1 index are: for every two of them, the
 * number of guest clusters (slots) whose entries differ, COPIED flags aside (an entry holding
 * nothing but that flag maps nothing). A missing table (null) maps nothing. Tables are given as
 * their words in native order, `wordsPerEntry` each.
 *
 * Copies of one table made by copy-on-write agree in most slots: a slot where all tables agree
 * costs one look at each, and only slots that differ somewhere are compared pair by pair.
 */

/** All bits of an entry's first big-endian word but COPIED (the top bit of its first byte), in native word order. */
export const NOT_COPIED = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0xffffff7f : 0x7fffffff;

/** distances[a * count + b]: slots below `slotLimit` that tables a and b map differently. */
export function tableDistances(tables: (Uint32Array | null)[], slotLimit: number, wordsPerEntry: number): Float64Array {
  const count = tables.length;
  const distances = new Float64Array(count * count);
  const none = tables.includes(null) ? new Uint32Array(slotLimit * wordsPerEntry) : new Uint32Array(0);
  const words = tables.map((table) => table ?? none);
  const first = words[0] ?? none;
  const end = slotLimit * wordsPerEntry;
  for (let word = 0; word < end; word += wordsPerEntry) {
    let agree = true;
    for (let table = 1; table < count && agree; table++) agree = sameEntry(first, words[table] ?? none, word, wordsPerEntry);
    if (agree) continue;
    for (let a = 0; a < count; a++) {
      for (let b = a + 1; b < count; b++) {
        if (sameEntry(words[a] ?? none, words[b] ?? none, word, wordsPerEntry)) continue;
        distances[a * count + b] = (distances[a * count + b] ?? 0) + 1;
        distances[b * count + a] = (distances[b * count + a] ?? 0) + 1;
      }
    }
  }
  return distances;
}

function sameEntry(a: Uint32Array, b: Uint32Array, word: number, wordsPerEntry: number): boolean {
  if ((((a[word] ?? 0) ^ (b[word] ?? 0)) & NOT_COPIED) !== 0) return false;
  for (let next = 1; next < wordsPerEntry; next++) if ((a[word + next] ?? 0) !== (b[word + next] ?? 0)) return false;
  return true;
}
