/**
 * Which mutations a case gets: the random phase picks one to three variants of structures the
 * Layout found (seeded, so a case is its rng seed); the systematic phase enumerates every variant
 * of the header, the first entries of each table, every snapshot, and truncation at every boundary.
 */
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { truncationPoints, type Layout, type Region } from './layout.ts';
import { readField, type Mutation } from './patches.ts';
import {
  backingNameVariants,
  compressedVariants,
  extensionEndVariants,
  extensionVariants,
  headerFieldVariants,
  l1EntryVariants,
  l2EntryVariants,
  largestDiskVariants,
  pointerTargets,
  refcountBlockVariants,
  refcountEntryVariants,
  snapshotExtraVariants,
  snapshotFieldVariants,
  snapshotTableVariants,
} from './variants.ts';

export { applyMutations, type Mutation, type Patch } from './patches.ts';

function pick<T>(random: SeededRandom, items: readonly T[]): T | null {
  return items.length === 0 ? null : (items[random.int(0, items.length)] ?? null);
}

function chance(random: SeededRandom, probability: number): boolean {
  return random.next() < probability;
}

/** Indices of the non-zero entries of an L1 table. */
function usedEntries(bytes: Uint8Array, table: Region): number[] {
  const used: number[] = [];
  for (let index = 0; index < table.length / 8; index++) if (readField(bytes, table.offset + index * 8, 8) !== 0n) used.push(index);
  return used;
}

type Generator = (layout: Layout, random: SeededRandom, bytes: Uint8Array) => Mutation | null;

const l1Generator = (tables: (layout: Layout) => { table: Region; name: string }[]): Generator => (layout, random, bytes) => {
  const chosen = pick(random, tables(layout).filter(({ table }) => table.length > 0));
  if (chosen === null) return null;
  const entries = chosen.table.length / 8;
  const used = usedEntries(bytes, chosen.table);
  const index = used.length > 0 && chance(random, 0.75) ? (pick(random, used) ?? 0) : chance(random, 0.5) ? entries - 1 : random.int(0, entries);
  return pick(random, l1EntryVariants(bytes, chosen.table, chosen.name, index, pointerTargets(layout, false)));
};

const GENERATORS: [Generator, number][] = [
  [(layout, random, bytes) => pick(random, headerFieldVariants(layout, bytes, pick(random, layout.headerFields) ?? { name: 'magic', offset: 0, size: 4 })), 6],
  [(layout, random) => {
    const spot = chance(random, 0.7) ? pick(random, layout.extensions) : null;
    return pick(random, spot === null ? extensionEndVariants(layout, random) : extensionVariants(layout, spot, random));
  }, 3],
  [(layout, random) => pick(random, backingNameVariants(layout)), 1],
  [(layout, random) => pick(random, largestDiskVariants(layout)), 1],
  [l1Generator((layout) => [{ table: layout.l1, name: 'L1' }]), 4],
  [l1Generator((layout) => layout.snapshotL1s.map((table) => ({ table, name: 'snapshot L1' }))), 2],
  [(layout, random, bytes) => {
    const spot = pick(random, layout.l2Entries);
    return spot === null ? null : pick(random, l2EntryVariants(layout, bytes, spot, pointerTargets(layout, false), random));
  }, 6],
  [(layout, random) => {
    const spot = pick(random, layout.l2Entries.filter((entry) => entry.kind === 'compressed'));
    return spot === null ? null : pick(random, compressedVariants(layout, spot));
  }, 2],
  [(layout, random, bytes) => {
    const index = chance(random, 0.7) && layout.refcountBlocks.length > 0 ? random.int(0, layout.refcountBlocks.length) : random.int(0, Math.min(layout.refcountTable.length / 8, 64));
    return pick(random, refcountEntryVariants(layout, bytes, index, pointerTargets(layout, false)));
  }, 3],
  [(layout, random) => {
    const block = pick(random, layout.refcountBlocks);
    return block === null ? null : pick(random, refcountBlockVariants(layout, block, random));
  }, 2],
  [(layout, random, bytes) => {
    const index = random.int(0, layout.snapshots.length);
    const spot = layout.snapshots[index];
    return spot === undefined ? null : pick(random, snapshotFieldVariants(layout, bytes, index, spot, pointerTargets(layout, false)));
  }, 4],
  [(layout, random, bytes) => {
    const spot = pick(random, layout.snapshots.filter((entry) => entry.extraSize > 0));
    return spot === null ? null : pick(random, snapshotExtraVariants(layout, bytes, spot, random));
  }, 2],
  [(layout, random, bytes) => pick(random, snapshotTableVariants(layout, bytes)), 1],
  [(layout, random) => {
    const size = pick(random, truncationPoints(layout)) ?? 0;
    return { label: `truncated to ${size} bytes`, patches: [{ op: 'truncate', size }] };
  }, 3],
  [byteFlips, 3],
  [splice, 2],
  [guestDataFlips, 2],
];

/** Random bytes in guest data clusters: what a guest filesystem reader (files/) reads, damaged. */
function guestDataFlips(layout: Layout, random: SeededRandom): Mutation | null {
  const data = layout.regions.filter((region) => region.what === 'data cluster');
  if (data.length === 0) return null;
  const count = random.int(1, 17);
  const patches: Mutation['patches'] = [];
  for (let flip = 0; flip < count; flip++) {
    const region = pick(random, data) ?? { offset: 0, length: layout.fileSize };
    const length = Math.max(1, Math.min(region.length, layout.fileSize - region.offset));
    // Half of them in a cluster's first 4 KiB, where partition tables, superblocks and descriptors sit in large clusters.
    const at = region.offset + random.int(0, chance(random, 0.5) ? Math.min(length, 4096) : length);
    patches.push({ op: 'write', at, hex: random.int(0, 256).toString(16).padStart(2, '0') });
  }
  return { label: `${count} random guest data bytes`, patches };
}

function byteFlips(layout: Layout, random: SeededRandom): Mutation {
  const count = random.int(1, 9);
  const metadata = layout.regions.filter((region) => region.what !== 'data cluster' && region.length > 0);
  const patches: Mutation['patches'] = [];
  for (let flip = 0; flip < count; flip++) {
    const region = (chance(random, 0.8) ? pick(random, metadata) : null) ?? { offset: 0, length: layout.fileSize };
    const at = region.offset + random.int(0, Math.max(1, Math.min(region.length, layout.fileSize - region.offset)));
    patches.push({ op: 'write', at, hex: random.int(0, 256).toString(16).padStart(2, '0') });
  }
  return { label: `${count} random bytes`, patches };
}

function splice(layout: Layout, random: SeededRandom): Mutation | null {
  if (chance(random, 0.3)) {
    const from = random.int(0, layout.fileSize);
    const to = random.int(0, layout.fileSize);
    const length = random.int(1, 4096);
    return { label: `splice ${length} bytes 0x${from.toString(16)} -> 0x${to.toString(16)}`, patches: [{ op: 'copy', from, to, length }] };
  }
  const source = pick(random, layout.regions);
  const target = pick(random, layout.regions);
  if (source === null || target === null) return null;
  const length = Math.max(8, Math.min(source.length, target.length || layout.clusterBytes, layout.clusterBytes));
  return { label: `splice ${source.what} over ${target.what}`, patches: [{ op: 'copy', from: source.offset, to: target.offset, length }] };
}

function oneMutation(layout: Layout, random: SeededRandom, bytes: Uint8Array): Mutation {
  const total = GENERATORS.reduce((sum, [, weight]) => sum + weight, 0);
  for (;;) {
    let roll = random.next() * total;
    for (const [generate, weight] of GENERATORS) {
      roll -= weight;
      if (roll > 0) continue;
      const mutation = generate(layout, random, bytes);
      if (mutation !== null) return mutation;
      break;
    }
  }
}

/** One to three mutations (mostly one), all derived from `rngSeed`. */
export function generateMutations(layout: Layout, seedBytes: Uint8Array, rngSeed: number): Mutation[] {
  const random = new SeededRandom(rngSeed);
  const count = chance(random, 0.7) ? 1 : random.int(2, 4);
  const mutations: Mutation[] = [];
  for (let index = 0; index < count; index++) mutations.push(oneMutation(layout, random, seedBytes));
  return mutations;
}

/**
 * Every variant of: each header field, each extension and the end of the list, the backing file
 * name, the largest disk the L1 can describe, the first and last used entries of the active and first snapshot L1 tables, one L2 entry of
 * each kind, every compressed descriptor kind, the first refcount table entries and block, every
 * field of every snapshot entry and its extra data, whole-table rewrites (parent loops, duplicate
 * names); and a truncation at every structure boundary.
 */
export function systematicMutations(layout: Layout, seedBytes: Uint8Array): Mutation[] {
  const random = new SeededRandom(0x5a5a);
  const targets = pointerTargets(layout, true);
  const mutations: Mutation[] = [];
  for (const field of layout.headerFields) mutations.push(...headerFieldVariants(layout, seedBytes, field));
  for (const spot of layout.extensions) mutations.push(...extensionVariants(layout, spot, random));
  mutations.push(...extensionEndVariants(layout, random), ...backingNameVariants(layout), ...largestDiskVariants(layout));
  const l1Tables = [{ table: layout.l1, name: 'L1' }, ...layout.snapshotL1s.slice(0, 1).map((table) => ({ table, name: 'snapshot L1' }))];
  for (const { table, name } of l1Tables) {
    const used = usedEntries(seedBytes, table);
    for (const index of new Set([used[0], used[used.length - 1]])) if (index !== undefined) mutations.push(...l1EntryVariants(seedBytes, table, name, index, targets));
  }
  for (const kind of ['normal', 'zero', 'compressed', 'unallocated']) {
    const spot = layout.l2Entries.find((entry) => entry.kind === kind);
    if (spot === undefined) continue;
    mutations.push(...l2EntryVariants(layout, seedBytes, spot, targets, random));
    if (kind === 'compressed') mutations.push(...compressedVariants(layout, spot));
  }
  for (const index of [0, 1]) mutations.push(...refcountEntryVariants(layout, seedBytes, index, targets));
  const block = layout.refcountBlocks[0];
  if (block !== undefined) mutations.push(...refcountBlockVariants(layout, block, random));
  mutations.push(...snapshotTableVariants(layout, seedBytes));
  layout.snapshots.forEach((spot, index) => {
    mutations.push(...snapshotFieldVariants(layout, seedBytes, index, spot, targets));
    if (spot.extraSize > 0) mutations.push(...snapshotExtraVariants(layout, seedBytes, spot, random));
  });
  for (const size of truncationPoints(layout)) mutations.push({ label: `truncated to ${size} bytes`, patches: [{ op: 'truncate', size }] });
  return mutations;
}
