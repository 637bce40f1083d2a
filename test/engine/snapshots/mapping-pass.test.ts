/**
 * The one pass over every state's mappings (snapshots/mapping-pass.ts): the distance it gives
 * between every two states is the count of guest clusters whose L2 entries differ (COPIED aside),
 * counted here the slow way, cluster by cluster; batches of any size give the same distances and
 * the same space figures; the guest-cluster cut leaves out what lies past it; and usage marks
 * every L2 table and data cluster it reached. Images are made by qemu-img and qemu-io, with normal,
 * zero and compressed clusters, in 4 KiB clusters (512 entries per L2 table, 2 MiB of guest each).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeL2 } from '../../../src/shared/qcow2/format/entries.ts';
import { Qcow2Image, type L1Table } from '../../../src/shared/qcow2/image/image.ts';
import { MappingPass, type MappingPassOptions } from '../../../src/shared/qcow2/snapshots/mapping-pass.ts';
import { MARK_DATA, MARK_METADATA } from '../../../src/shared/qcow2/snapshots/table-usage.ts';
import { mappedStates } from '../../../src/shared/qcow2/snapshots/usage.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
let imagePath: string;
const CLUSTER = 4096;
const TABLE_SPAN = 512 * CLUSTER;

beforeAll(async () => {
  folder = tempDir();
  imagePath = folder.file('states.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, imagePath, String(6 * TABLE_SPAN)]);
  const at = (table: number, cluster: number): number => table * TABLE_SPAN + cluster * CLUSTER;
  await qemuIo(imagePath, [`write -P 1 0 ${4 * TABLE_SPAN}`, `write -c -P 2 ${at(4, 0)} ${CLUSTER}`]);
  await qemuImg(['snapshot', '-c', 's1', imagePath]);
  await qemuIo(imagePath, [`write -P 3 ${at(1, 10)} ${5 * CLUSTER}`, `write -z ${at(3, 100)} ${2 * CLUSTER}`]);
  await qemuImg(['snapshot', '-c', 's2', imagePath]);
  await qemuIo(imagePath, [`write -P 4 ${at(3, 7)} ${CLUSTER}`, `write -P 5 ${at(5, 511)} ${CLUSTER}`, `write -c -P 6 ${at(4, 1)} ${CLUSTER}`]);
  await qemuImg(['snapshot', '-c', 's3', imagePath]);
  await qemuIo(imagePath, [`write -P 7 ${at(0, 0)} ${3 * CLUSTER}`, `discard ${at(2, 0)} ${TABLE_SPAN}`]);
});
afterAll(() => folder.cleanup());

/** Each guest cluster's mapping as text, from decoding every entry (none where no table or an empty entry). */
function mappingOf(image: Qcow2Image, l1: L1Table, guestClusters: number): string[] {
  const mapping: string[] = [];
  for (let cluster = 0; cluster < guestClusters; cluster++) {
    const l1Index = Math.floor(cluster / image.l2Entries);
    const l2Offset = l1Index < l1.size ? image.l2OffsetAt(l1, l1Index) : 0;
    if (l2Offset === 0) {
      mapping.push('none');
      continue;
    }
    const entry = decodeL2(image.l2Cache.get(l2Offset).view, (cluster % image.l2Entries) * image.l2EntryBytes, image.l2Format);
    const empty = entry.kind === 'unallocated' && entry.hostOffset === 0 && entry.allocMask === 0;
    mapping.push(empty ? 'none' : `${entry.kind} ${entry.hostOffset} ${entry.compressedSize} ${entry.allocMask} ${entry.zeroMask}`);
  }
  return mapping;
}

function differing(a: string[], b: string[]): number {
  return a.filter((value, index) => value !== b[index]).length;
}

function withImage<T>(use: (image: Qcow2Image) => T): T {
  const image = Qcow2Image.open(imagePath, { readOnly: true });
  try {
    return use(image);
  } finally {
    image.close();
  }
}

function pass(image: Qcow2Image, options: Partial<MappingPassOptions>): MappingPass {
  return new MappingPass(image, mappedStates(image), { usage: true, distances: true, guestClusters: image.virtualSize / CLUSTER, ...options }).run();
}

describe('MappingPass', () => {
  it('gives the distance between every two states as the clusters whose entries differ, in batches of any size', () => {
    withImage((image) => {
      const states = mappedStates(image);
      expect(states).toHaveLength(4);
      const guestClusters = image.virtualSize / CLUSTER;
      const mappings = states.map((state) => mappingOf(image, state.l1, guestClusters));
      const whole = pass(image, {});
      const tiny = pass(image, { batchTableBytes: 1 });
      const expected: number[] = [];
      for (let a = 0; a < states.length; a++) {
        for (let b = 0; b < states.length; b++) {
          expected.push(differing(mappings[a] ?? [], mappings[b] ?? []));
          expect(whole.distance(a, b), `states ${a} and ${b}`).toBe(expected.at(-1));
          expect(tiny.distance(a, b), `states ${a} and ${b}, one index per batch`).toBe(expected.at(-1));
        }
      }
      // The writes between the states are what the distances count: s1 → s2 wrote 5 + 2 clusters.
      expect(whole.distance(1, 2)).toBe(7);
      for (let state = 0; state < states.length; state++) expect(tiny.usage(state)).toEqual(whole.usage(state));
    });
  });

  it('leaves out guest clusters past the cut (a snapshot VM state area), in the cut table too', () => {
    withImage((image) => {
      const cut = 3 * 512 + 5;
      const states = mappedStates(image);
      const mappings = states.map((state) => mappingOf(image, state.l1, cut));
      const cutPass = pass(image, { guestClusters: cut, usage: false });
      for (let a = 0; a < states.length; a++) {
        for (let b = a + 1; b < states.length; b++) expect(cutPass.distance(a, b)).toBe(differing(mappings[a] ?? [], mappings[b] ?? []));
      }
      // s2 → s3 wrote in table 3 past the cut (cluster 7 of it), and in tables 4 and 5: nothing before the cut differs.
      expect(cutPass.distance(2, 3)).toBe(0);
    });
  });

  it('marks every L2 table some state names as metadata and every data cluster as data, one byte per file cluster', () => {
    withImage((image) => {
      const marks = new Uint8Array(Math.ceil(image.file.size() / CLUSTER));
      const marked = pass(image, { marks, distances: false });
      const tables = new Set<number>();
      const data = new Set<number>();
      for (const state of mappedStates(image)) {
        for (let l1Index = 0; l1Index < state.l1.size; l1Index++) {
          const l2Offset = image.l2OffsetAt(state.l1, l1Index);
          if (l2Offset === 0) continue;
          tables.add(l2Offset / CLUSTER);
          const view = image.l2Cache.get(l2Offset).view;
          for (let slot = 0; slot < image.l2Entries; slot++) {
            const entry = decodeL2(view, slot * image.l2EntryBytes, image.l2Format);
            if ((entry.kind === 'normal' || entry.kind === 'zero') && entry.hostOffset !== 0) data.add(entry.hostOffset / CLUSTER);
            if (entry.kind === 'compressed') {
              for (let cluster = Math.floor(entry.hostOffset / CLUSTER); cluster <= Math.floor((entry.hostOffset + entry.compressedSize - 1) / CLUSTER); cluster++) data.add(cluster);
            }
          }
        }
      }
      expect(new Set([...marked.tableOffsets()].map((offset) => offset / CLUSTER))).toEqual(tables);
      for (let cluster = 0; cluster < marks.length; cluster++) {
        expect((marks[cluster] ?? 0) & MARK_METADATA, `cluster ${cluster} metadata`).toBe(tables.has(cluster) ? MARK_METADATA : 0);
        expect((marks[cluster] ?? 0) & MARK_DATA, `cluster ${cluster} data`).toBe(data.has(cluster) ? MARK_DATA : 0);
      }
    });
  });
});
