/**
 * How far apart two states of a disk are, from their mapping tables alone: the number of guest
 * clusters whose L2 entries differ (COPIED flags aside). An L2 table both states name counts
 * nothing, and each table is read once into a list of its used entries, so comparing states
 * costs in proportion to what they map, not to the size of the disk. Guest clusters past
 * `guestClusters` (a snapshot's VM state area) are not counted.
 */
import type { Qcow2Image } from '../image/image.ts';

/** A table's used entries: their slots (ascending) and their words, `wordsPerEntry` each. */
interface UsedEntries {
  slots: Int32Array;
  words: Uint32Array;
}

export class MappingDistance {
  private readonly image: Qcow2Image;
  private readonly guestClusters: number;
  private readonly wordsPerEntry: number;
  private readonly used = new Map<number, UsedEntries>();
  private readonly pairs = new Map<number, Map<number, number>>();

  constructor(image: Qcow2Image, guestClusters: number) {
    this.image = image;
    this.guestClusters = guestClusters;
    this.wordsPerEntry = image.l2EntryBytes / 4;
  }

  /** Clusters mapped differently by two L1 tables, given as L2 offsets by L1 index (0: no table). */
  between(a: readonly number[], b: readonly number[]): number {
    let total = 0;
    const perTable = this.image.l2Entries;
    const tables = Math.min(Math.max(a.length, b.length), Math.ceil(this.guestClusters / perTable));
    for (let l1Index = 0; l1Index < tables; l1Index++) {
      const tableA = a[l1Index] ?? 0;
      const tableB = b[l1Index] ?? 0;
      if (tableA === tableB) continue;
      total += this.tableDistance(Math.min(tableA, tableB), Math.max(tableA, tableB), Math.min(perTable, this.guestClusters - l1Index * perTable));
    }
    return total;
  }

  private tableDistance(low: number, high: number, slotLimit: number): number {
    // Only a disk's last table is cut short; its pairs are not worth caching.
    const cacheable = slotLimit === this.image.l2Entries;
    const byHigh = cacheable ? this.pairs.get(low) : undefined;
    const cached = byHigh?.get(high);
    if (cached !== undefined) return cached;
    const b = this.usedEntries(high);
    let count: number;
    if (low === 0) count = countBelow(b.slots, slotLimit);
    else count = this.differences(this.usedEntries(low), b, slotLimit);
    if (cacheable) {
      const map = byHigh ?? new Map<number, number>();
      map.set(high, count);
      if (byHigh === undefined) this.pairs.set(low, map);
    }
    return count;
  }

  /** Slots below `slotLimit` used by one table and not the other, or by both with different entries. */
  private differences(a: UsedEntries, b: UsedEntries, slotLimit: number): number {
    const per = this.wordsPerEntry;
    let count = 0;
    let indexA = 0;
    let indexB = 0;
    for (;;) {
      const slotA = indexA < a.slots.length ? (a.slots[indexA] ?? slotLimit) : slotLimit;
      const slotB = indexB < b.slots.length ? (b.slots[indexB] ?? slotLimit) : slotLimit;
      if (slotA >= slotLimit && slotB >= slotLimit) return count;
      if (slotA === slotB) {
        const wordA = indexA * per;
        const wordB = indexB * per;
        // The first word holds the COPIED flag (bit 63 of the entry), which says nothing about the data.
        let differs = ((a.words[wordA] ?? 0) ^ (b.words[wordB] ?? 0)) & NOT_COPIED;
        for (let next = 1; next < per && differs === 0; next++) differs = (a.words[wordA + next] ?? 0) ^ (b.words[wordB + next] ?? 0);
        if (differs !== 0) count++;
        indexA++;
        indexB++;
      } else {
        count++;
        if (slotA < slotB) indexA++;
        else indexB++;
      }
    }
  }

  private usedEntries(tableOffset: number): UsedEntries {
    const known = this.used.get(tableOffset);
    if (known !== undefined) return known;
    const bytes = this.image.l2Cache.get(tableOffset).bytes;
    const tableWords = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
    const per = this.wordsPerEntry;
    const slots = this.image.l2Entries;
    const scratch = new Int32Array(slots);
    let usedCount = 0;
    for (let slot = 0, word = 0; slot < slots; slot++, word += per) {
      let bits = (tableWords[word] ?? 0) & NOT_COPIED;
      for (let next = 1; next < per; next++) bits |= tableWords[word + next] ?? 0;
      if (bits !== 0) scratch[usedCount++] = slot;
    }
    const entries: UsedEntries = { slots: scratch.slice(0, usedCount), words: new Uint32Array(usedCount * per) };
    for (let index = 0, target = 0; index < usedCount; index++) {
      const word = (scratch[index] ?? 0) * per;
      for (let next = 0; next < per; next++) entries.words[target++] = tableWords[word + next] ?? 0;
    }
    this.used.set(tableOffset, entries);
    return entries;
  }
}

function countBelow(slots: Int32Array, limit: number): number {
  let count = 0;
  while (count < slots.length && (slots[count] ?? limit) < limit) count++;
  return count;
}

/** All bits of an entry's first big-endian word but COPIED (the top bit of its first byte), in native word order. */
const NOT_COPIED = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0xffffff7f : 0x7fffffff;
