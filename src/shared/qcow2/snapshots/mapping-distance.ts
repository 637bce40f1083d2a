/**
 * How far apart two L2 tables are: the number of guest clusters (slots) whose entries differ,
 * COPIED flags aside (an entry holding nothing but that flag maps nothing). A missing table
 * (null) maps nothing. Tables are given as their words in native order, `wordsPerEntry` each.
 */

/** All bits of an entry's first big-endian word but COPIED (the top bit of its first byte), in native word order. */
export const NOT_COPIED = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0xffffff7f : 0x7fffffff;

/** Slots below `slotLimit` that one table maps and the other does not, or maps differently. */
export function tableDistance(a: Uint32Array | null, b: Uint32Array | null, slotLimit: number, wordsPerEntry: number): number {
  if (a === null && b === null) return 0;
  if (a === null || b === null) return usedSlots((a ?? b) as Uint32Array, slotLimit, wordsPerEntry);
  let count = 0;
  const end = slotLimit * wordsPerEntry;
  for (let word = 0; word < end; word += wordsPerEntry) {
    let differs = ((a[word] ?? 0) ^ (b[word] ?? 0)) & NOT_COPIED;
    for (let next = 1; next < wordsPerEntry && differs === 0; next++) differs = (a[word + next] ?? 0) ^ (b[word + next] ?? 0);
    if (differs !== 0) count++;
  }
  return count;
}

function usedSlots(table: Uint32Array, slotLimit: number, wordsPerEntry: number): number {
  let count = 0;
  const end = slotLimit * wordsPerEntry;
  for (let word = 0; word < end; word += wordsPerEntry) {
    let bits = (table[word] ?? 0) & NOT_COPIED;
    for (let next = 1; next < wordsPerEntry; next++) bits |= table[word + next] ?? 0;
    if (bits !== 0) count++;
  }
  return count;
}
