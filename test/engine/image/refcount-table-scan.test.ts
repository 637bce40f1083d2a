/**
 * Refcounts.usedTableEntries, where the scans over a refcount table (the metadata set at open, the
 * change validation) stop: just past the last entry with any bit set, wherever it lies.
 */
import { describe, expect, it } from 'vitest';
import { Refcounts } from '../../../src/shared/qcow2/image/refcounts.ts';
import { MemoryBlockFile } from '../../helpers/memory-block-file.ts';

const CLUSTER_BITS = 16;

function tableWith(clusters: number, entries: [index: number, low: number][]): Refcounts {
  const table = new Uint8Array(clusters << CLUSTER_BITS);
  const view = new DataView(table.buffer);
  for (const [index, low] of entries) view.setUint32(index * 8 + 4, low);
  const file = new MemoryBlockFile('image', new Uint8Array(0));
  return new Refcounts(file, { clusterBits: CLUSTER_BITS, refcountOrder: 4, tableOffset: 1 << CLUSTER_BITS, tableClusters: clusters }, table);
}

describe('Refcounts.usedTableEntries', () => {
  it('is 0 for an empty table and counts up to the last entry with any bit set', () => {
    expect(tableWith(1, []).usedTableEntries()).toBe(0);
    expect(tableWith(1, [[0, 0x30000]]).usedTableEntries()).toBe(1);
    expect(tableWith(1, [[0, 0x30000], [700, 0x40000]]).usedTableEntries()).toBe(701);
    expect(tableWith(2, [[8191, 0x40000], [8192, 0x50000]]).usedTableEntries()).toBe(8193);
    expect(tableWith(2, [[16383, 0x60000]]).usedTableEntries()).toBe(16384);
  });

  it('counts an entry with only reserved bits set (invalid, for the scans to report), not only valid offsets', () => {
    expect(tableWith(1, [[0, 0x30000], [511, 0x1]]).usedTableEntries()).toBe(512);
    expect(tableWith(1, [[9, 0x100]]).usedTableEntries()).toBe(10);
  });
});
