/**
 * How far apart two states of a disk are, from their mapping tables alone: the number of guest
 * clusters whose L2 entries differ (COPIED flags aside). An L2 table both states name counts
 * nothing, so states that share most tables compare in time proportional to what differs.
 * Guest clusters past `guestClusters` (a snapshot's VM state area) are not counted.
 */
import type { Qcow2Image } from './image.ts';

export class MappingDistance {
  private readonly image: Qcow2Image;
  private readonly guestClusters: number;
  private readonly pairs = new Map<string, number>();
  private readonly allocated = new Map<string, number>();

  constructor(image: Qcow2Image, guestClusters: number) {
    this.image = image;
    this.guestClusters = guestClusters;
  }

  /** Clusters mapped differently by two L1 tables, given as L2 offsets by L1 index (0: no table). */
  between(a: readonly number[], b: readonly number[]): number {
    let total = 0;
    const tables = Math.min(Math.max(a.length, b.length), Math.ceil(this.guestClusters / this.image.l2Entries));
    for (let l1Index = 0; l1Index < tables; l1Index++) {
      const tableA = a[l1Index] ?? 0;
      const tableB = b[l1Index] ?? 0;
      if (tableA === tableB) continue;
      const slots = Math.min(this.image.l2Entries, this.guestClusters - l1Index * this.image.l2Entries);
      total += this.tableDistance(Math.min(tableA, tableB), Math.max(tableA, tableB), slots);
    }
    return total;
  }

  private tableDistance(low: number, high: number, slots: number): number {
    if (low === 0) return this.allocatedEntries(high, slots);
    const key = `${low}:${high}:${slots}`;
    const cached = this.pairs.get(key);
    if (cached !== undefined) return cached;
    const wordsA = words(this.image.l2Cache.get(low).bytes);
    const wordsB = words(this.image.l2Cache.get(high).bytes);
    const perEntry = this.image.l2EntryBytes / 4;
    let count = 0;
    for (let slot = 0, word = 0; slot < slots; slot++, word += perEntry) {
      // The first word holds the COPIED flag (bit 63 of the entry), which says nothing about the data.
      let differs = ((wordsA[word] ?? 0) ^ (wordsB[word] ?? 0)) & NOT_COPIED;
      for (let next = 1; next < perEntry && differs === 0; next++) differs = (wordsA[word + next] ?? 0) ^ (wordsB[word + next] ?? 0);
      if (differs !== 0) count++;
    }
    this.pairs.set(key, count);
    return count;
  }

  /** Entries of a table that map anything (against a state with no table there). */
  private allocatedEntries(tableOffset: number, slots: number): number {
    const key = `${tableOffset}:${slots}`;
    const cached = this.allocated.get(key);
    if (cached !== undefined) return cached;
    const tableWords = words(this.image.l2Cache.get(tableOffset).bytes);
    const perEntry = this.image.l2EntryBytes / 4;
    let count = 0;
    for (let slot = 0, word = 0; slot < slots; slot++, word += perEntry) {
      let used = (tableWords[word] ?? 0) & NOT_COPIED;
      for (let next = 1; next < perEntry && used === 0; next++) used = tableWords[word + next] ?? 0;
      if (used !== 0) count++;
    }
    this.allocated.set(key, count);
    return count;
  }
}

/** A table's bytes as native-order words: only compared for equality, except for the COPIED bit below. */
function words(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
}

/** All bits of an entry's first big-endian word but COPIED (the top bit of its first byte), in native word order. */
const NOT_COPIED = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0xffffff7f : 0x7fffffff;
