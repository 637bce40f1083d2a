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
    const viewA = this.image.l2Cache.get(low).view;
    const viewB = this.image.l2Cache.get(high).view;
    const words = this.image.l2EntryBytes / 4;
    let count = 0;
    for (let slot = 0; slot < slots; slot++) {
      const position = slot * this.image.l2EntryBytes;
      // The first word holds the COPIED flag (bit 63 of the entry), which says nothing about the data.
      let differs = ((viewA.getUint32(position) ^ viewB.getUint32(position)) & 0x7fffffff) !== 0;
      for (let word = 1; word < words && !differs; word++) differs = viewA.getUint32(position + word * 4) !== viewB.getUint32(position + word * 4);
      if (differs) count++;
    }
    this.pairs.set(key, count);
    return count;
  }

  /** Entries of a table that map anything (against a state with no table there). */
  private allocatedEntries(tableOffset: number, slots: number): number {
    const key = `${tableOffset}:${slots}`;
    const cached = this.allocated.get(key);
    if (cached !== undefined) return cached;
    const tableView = this.image.l2Cache.get(tableOffset).view;
    const words = this.image.l2EntryBytes / 4;
    let count = 0;
    for (let slot = 0; slot < slots; slot++) {
      const position = slot * this.image.l2EntryBytes;
      let used = (tableView.getUint32(position) & 0x7fffffff) !== 0;
      for (let word = 1; word < words && !used; word++) used = tableView.getUint32(position + word * 4) !== 0;
      if (used) count++;
    }
    this.allocated.set(key, count);
    return count;
  }
}
