/**
 * Ways to damage a FAT volume where its structures are: boot sector fields, FAT entries of the
 * chains (loops, pointers outside, free and bad markers), folder entries (cluster, size,
 * attributes, name bytes, long-name ordinals and checksums), folder bytes copied over others,
 * truncation at every boundary, and random bytes in the metadata. Little-endian, as FAT is.
 */
import { SeededRandom } from '../../helpers/seeded-random.ts';
import type { BootField, ChainSpot, FatLayout } from './fat-layout.ts';
import { toHex, type Mutation, type Patch } from './patches.ts';

function le(at: number, value: number, size: number): Patch {
  const bytes = new Uint8Array(size);
  for (let index = 0; index < size; index++) bytes[index] = Math.floor(value / 2 ** (8 * index)) & 0xff;
  return { op: 'write', at, hex: toHex(bytes) };
}

function readLe(bytes: Uint8Array, at: number, size: number): number {
  let value = 0;
  for (let index = size - 1; index >= 0; index--) value = value * 256 + (bytes[at + index] ?? 0);
  return value;
}

export function bootFieldVariants(bytes: Uint8Array, field: BootField): Mutation[] {
  const current = readLe(bytes, field.offset, field.size);
  const max = 2 ** (8 * field.size) - 1;
  const values = new Set([0, 1, 2, 3, max, max - 1, current + 1, current - 1, current * 2, Math.floor(current / 2), 0x80, 0x8000 & max, 0x0ffffff7 & max]);
  return [...values]
    .filter((value) => value >= 0 && value <= max && value !== current)
    .map((value) => ({ label: `boot ${field.name} = ${value}`, patches: [le(field.offset, value, field.size)] }));
}

/** Writes a FAT entry in every copy of the FAT (the reader may follow any one of them). */
function fatEntryPatches(layout: FatLayout, bytes: Uint8Array, cluster: number, value: number): Patch[] {
  const { geometry } = layout;
  const copies = Math.max(1, Math.round((geometry.dataOffset - geometry.fatOffset - (geometry.rootRegion?.length ?? 0)) / geometry.fatBytes));
  const patches: Patch[] = [];
  for (let copy = 0; copy < copies; copy++) {
    const base = geometry.fatOffset + copy * geometry.fatBytes;
    if (geometry.width === 32) patches.push(le(base + cluster * 4, value, 4));
    else if (geometry.width === 16) patches.push(le(base + cluster * 2, value, 2));
    else {
      const at = base + Math.floor((cluster * 3) / 2);
      const pair = readLe(bytes, at, 2);
      patches.push(le(at, cluster % 2 === 0 ? (pair & 0xf000) | (value & 0xfff) : (pair & 0x000f) | ((value & 0xfff) << 4), 2));
    }
  }
  return patches;
}

export function fatEntryVariants(layout: FatLayout, bytes: Uint8Array, chain: ChainSpot, index: number, random: SeededRandom): Mutation[] {
  const cluster = chain.clusters[index];
  if (cluster === undefined) return [];
  const { clusterCount, width, rootCluster } = layout.geometry;
  const mask = width === 32 ? 0x0fffffff : width === 16 ? 0xffff : 0xfff;
  const values = new Set([0, 1, cluster, chain.clusters[0] ?? 2, clusterCount + 1, clusterCount + 2, mask, mask - 8, mask - 7, Math.max(2, rootCluster), 2 + random.int(0, clusterCount)]);
  return [...values].map((value) => ({ label: `FAT entry of ${chain.path} cluster #${index} (${cluster}) = ${value}`, patches: fatEntryPatches(layout, bytes, cluster, value & mask) }));
}

export function folderSlotVariants(layout: FatLayout, bytes: Uint8Array, slot: number, random: SeededRandom): Mutation[] {
  const { clusterCount, rootCluster } = layout.geometry;
  const folderClusters = layout.chains.filter((chain) => chain.isFolder).map((chain) => chain.clusters[0] ?? 0);
  const mutation = (what: string, patches: Patch[]): Mutation => ({ label: `folder slot 0x${slot.toString(16)} ${what}`, patches });
  const isLongName = ((bytes[slot + 11] ?? 0) & 0x3f) === 0x0f;
  if (isLongName) {
    return [
      ...[0x00, 0x01, 0x40, 0x41, 0x54, 0x5f, 0xe5, (bytes[slot] ?? 0) ^ 0x40].map((value) => mutation(`ordinal ${value}`, [le(slot, value, 1)])),
      mutation('checksum + 1', [le(slot + 13, ((bytes[slot + 13] ?? 0) + 1) & 0xff, 1)]),
      mutation('attributes 0x10', [le(slot + 11, 0x10, 1)]),
      mutation('"/" in the name', [le(slot + 1, 0x2f, 2)]),
      mutation('lone surrogate', [le(slot + 1, 0xd800, 2)]),
    ];
  }
  const clusterValues = new Set([0, 1, rootCluster, clusterCount + 2, 0xffff, 0x0fffffff, ...folderClusters.slice(0, 4), 2 + random.int(0, clusterCount)]);
  return [
    ...[...clusterValues].map((value) => mutation(`cluster ${value}`, [le(slot + 20, Math.floor(value / 0x10000), 2), le(slot + 26, value & 0xffff, 2)])),
    ...[0, 1, 0xffffffff, layout.fileSize, readLe(bytes, slot + 28, 4) + layout.geometry.clusterBytes].map((value) => mutation(`size ${value}`, [le(slot + 28, value >>> 0, 4)])),
    ...[0x00, 0x08, 0x0f, 0x10, 0x18, 0xff, (bytes[slot + 11] ?? 0) ^ 0x10].map((value) => mutation(`attributes 0x${value.toString(16)}`, [le(slot + 11, value, 1)])),
    ...[0x00, 0x05, 0x2e, 0x2f, 0xe5, 0x01, 0x20].map((value) => mutation(`first name byte 0x${value.toString(16)}`, [le(slot, value, 1)])),
    mutation('name ".."', [{ op: 'write', at: slot, hex: toHex(new TextEncoder().encode('..         ')) }]),
    mutation('date 0xffff', [le(slot + 24, 0xffff, 2), le(slot + 22, 0xffff, 2)]),
  ];
}

export function truncations(layout: FatLayout): Mutation[] {
  const points = new Set<number>();
  for (const boundary of layout.boundaries) for (const point of [boundary - 1, boundary, boundary + 1]) if (point >= 0 && point < layout.fileSize) points.add(point);
  return [...points].sort((a, b) => a - b).map((size) => ({ label: `truncated to ${size} bytes`, patches: [{ op: 'truncate', size }] }));
}

/** Every boot field variant, the first and last FAT entries of each chain, a sample of folder slots, and every truncation. */
export function systematicFatMutations(layout: FatLayout, bytes: Uint8Array): Mutation[] {
  const random = new SeededRandom(0xfa7);
  const mutations: Mutation[] = [];
  for (const field of layout.bootFields) mutations.push(...bootFieldVariants(bytes, field));
  for (const chain of layout.chains) {
    for (const index of new Set([0, chain.clusters.length - 1])) mutations.push(...fatEntryVariants(layout, bytes, chain, index, random));
  }
  for (const slot of layout.folderSlots.filter((_, index) => index % 7 === 0)) mutations.push(...folderSlotVariants(layout, bytes, slot, random));
  mutations.push(...truncations(layout));
  return mutations;
}

function pick<T>(random: SeededRandom, items: readonly T[]): T | undefined {
  return items.length === 0 ? undefined : items[random.int(0, items.length)];
}

function oneMutation(layout: FatLayout, bytes: Uint8Array, random: SeededRandom): Mutation {
  for (;;) {
    const kind = random.int(0, 7);
    let chosen: Mutation | undefined;
    if (kind === 0) chosen = pick(random, bootFieldVariants(bytes, pick(random, layout.bootFields) ?? { name: 'jump', offset: 0, size: 1 }));
    else if (kind === 1 || kind === 2) {
      const chain = pick(random, layout.chains.filter((candidate) => candidate.clusters.length > 0));
      if (chain !== undefined) chosen = pick(random, fatEntryVariants(layout, bytes, chain, random.int(0, chain.clusters.length), random));
    } else if (kind === 3 || kind === 4) {
      const slot = pick(random, layout.folderSlots);
      if (slot !== undefined) chosen = pick(random, folderSlotVariants(layout, bytes, slot, random));
    } else if (kind === 5) {
      const from = pick(random, layout.folderSlots);
      const to = pick(random, layout.folderSlots);
      if (from !== undefined && to !== undefined) chosen = { label: `folder bytes 0x${from.toString(16)} over 0x${to.toString(16)}`, patches: [{ op: 'copy', from: from - (from % 512), to: to - (to % 512), length: 512 }] };
    } else {
      const count = random.int(1, 9);
      const metadataEnd = Math.min(layout.fileSize, layout.geometry.dataOffset + 16 * layout.geometry.clusterBytes);
      const patches: Patch[] = [];
      for (let flip = 0; flip < count; flip++) {
        const slot = random.next() < 0.5 ? pick(random, layout.folderSlots) : undefined;
        const at = slot !== undefined ? slot + random.int(0, 32) : random.int(0, metadataEnd);
        patches.push({ op: 'write', at, hex: random.int(0, 256).toString(16).padStart(2, '0') });
      }
      chosen = { label: `${count} random bytes`, patches };
    }
    if (chosen !== undefined) return chosen;
  }
}

/** One to three mutations, all derived from `rngSeed`. */
export function randomFatMutations(layout: FatLayout, bytes: Uint8Array, rngSeed: number): Mutation[] {
  const random = new SeededRandom(rngSeed);
  const count = random.next() < 0.7 ? 1 : random.int(2, 4);
  const mutations: Mutation[] = [];
  for (let index = 0; index < count; index++) mutations.push(oneMutation(layout, bytes, random));
  return mutations;
}
