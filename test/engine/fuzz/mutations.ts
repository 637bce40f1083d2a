/**
 * Mutations aimed at the structures a Layout found. A mutation is a list of concrete patches
 * (write bytes / truncate / copy a range), so a saved case replays byte for byte without the
 * generator that made it.
 */
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { truncationPoints, type Layout, type Region } from './layout.ts';

export type Patch =
  | { op: 'write'; at: number; hex: string }
  | { op: 'truncate'; size: number }
  | { op: 'copy'; from: number; to: number; length: number }
  /** `hex` repeated over `length` bytes from `at`. */
  | { op: 'fill'; at: number; length: number; hex: string };

export interface Mutation {
  label: string;
  patches: Patch[];
}

/** Writes past the end may grow the file, but never by more than this. */
const MAX_GROWTH = 1024 * 1024;

export function applyMutations(seed: Uint8Array, mutations: Mutation[]): Uint8Array {
  let bytes = seed.slice();
  const grow = (end: number): void => {
    if (end <= bytes.length) return;
    const grown = new Uint8Array(Math.min(end, seed.length + MAX_GROWTH));
    grown.set(bytes);
    bytes = grown;
  };
  for (const mutation of mutations) {
    for (const patch of mutation.patches) {
      if (patch.op === 'truncate') {
        bytes = bytes.slice(0, Math.min(patch.size, bytes.length));
      } else if (patch.op === 'write' || patch.op === 'fill') {
        const data = patch.op === 'write' ? fromHex(patch.hex) : repeated(fromHex(patch.hex), patch.length);
        grow(patch.at + data.length);
        bytes.set(data.subarray(0, Math.max(0, bytes.length - patch.at)), patch.at);
      } else {
        const source = bytes.slice(patch.from, Math.min(patch.from + patch.length, bytes.length));
        grow(patch.to + source.length);
        bytes.set(source.subarray(0, Math.max(0, bytes.length - patch.to)), patch.to);
      }
    }
  }
  return bytes;
}

function repeated(pattern: Uint8Array, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length && pattern.length > 0; at += pattern.length) bytes.set(pattern.subarray(0, length - at), at);
  return bytes;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let index = 0; index < bytes.length; index++) bytes[index] = Number.parseInt(hex.slice(index * 2, index * 2 + 2), 16);
  return bytes;
}

// ------------------------------------------------------------------ values

const U64_MASK = (1n << 64n) - 1n;

function encode(value: bigint, size: number): string {
  const bytes = new Uint8Array(size);
  let rest = value & ((1n << BigInt(size * 8)) - 1n);
  for (let index = size - 1; index >= 0; index--) {
    bytes[index] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return toHex(bytes);
}

function readBig(bytes: Uint8Array, at: number, size: number): bigint {
  let value = 0n;
  for (let index = 0; index < size; index++) value = (value << 8n) | BigInt(bytes[at + index] ?? 0);
  return value;
}

function write(at: number, value: bigint, size: number): Patch {
  return { op: 'write', at, hex: encode(value, size) };
}

function pick<T>(random: SeededRandom, items: readonly T[]): T {
  const item = items[random.int(0, items.length)];
  if (item === undefined) throw new Error('pick from an empty list');
  return item;
}

function chance(random: SeededRandom, probability: number): boolean {
  return random.next() < probability;
}

/** Boundary values for a field of `size` bytes that currently holds `current`. */
function fieldValues(layout: Layout, current: bigint, size: number): bigint[] {
  const cluster = BigInt(layout.clusterBytes);
  const file = BigInt(layout.fileSize);
  const max = (1n << BigInt(size * 8)) - 1n;
  const values = [0n, 1n, 2n, 7n, 8n, 9n, 16n, 21n, 22n, 64n, 65n, 511n, 512n, 513n, 0xffffn, 0x10000n, current - 1n, current + 1n, current * 2n, current + cluster, current - cluster, max, max - 1n, max >> 1n, (max >> 1n) + 1n];
  if (size >= 4) values.push(cluster - 1n, cluster, cluster + 1n, file, file - 1n, file + cluster, 0x7fffffffn, 0x80000000n, 0xfffffff8n, 0x100000n, 0x1000000n);
  if (size === 8) values.push(1n << 32n, (1n << 32n) + cluster, (1n << 53n) - 1n, 1n << 53n, (1n << 55n) + cluster, 1n << 56n, 1n << 62n, 1n << 63n, U64_MASK - cluster + 1n);
  return values.filter((value) => value >= 0n && value <= max);
}

/** Places a pointer can aim at: every structure, the middle of one, past the end, absurdly far. */
function pointerTargets(layout: Layout): { what: string; offset: number }[] {
  const cluster = layout.clusterBytes;
  const endAligned = Math.ceil(layout.fileSize / cluster) * cluster;
  const targets = [
    { what: 'header', offset: 0 },
    { what: 'one cluster in', offset: cluster },
    { what: 'unaligned', offset: cluster + 512 === 2 * cluster ? cluster + 256 : cluster + 512 },
    { what: 'end of file', offset: endAligned },
    { what: 'past end of file', offset: endAligned + 16 * cluster },
    { what: 'past 4 GiB', offset: 2 ** 32 },
    { what: 'near 2^56', offset: 2 ** 55 },
  ];
  for (const region of layout.regions) targets.push({ what: region.what, offset: region.offset });
  return targets;
}

// ------------------------------------------------------------------ generators

type Generator = (layout: Layout, random: SeededRandom, bytes: Uint8Array) => Mutation | null;

const COPIED = 1n << 63n;
const COMPRESSED = 1n << 62n;

const headerField: Generator = (layout, random, bytes) => {
  const field = pick(random, layout.headerFields);
  const current = readBig(bytes, field.offset, field.size);
  let value: bigint;
  if (field.name.endsWith('_features') && chance(random, 0.6)) value = current ^ (1n << BigInt(chance(random, 0.7) ? random.int(0, 6) : random.int(0, 64)));
  else if (field.name === 'magic' && chance(random, 0.5)) value = current ^ 1n;
  else value = pick(random, fieldValues(layout, current, field.size));
  return { label: `header ${field.name} = 0x${value.toString(16)}`, patches: [write(field.offset, value, field.size)] };
};

const EXTENSION_TYPES = [0, 0xe2792aca, 0x6803f857, 0x23852875, 0x0537be77, 0x44415441, 0x12345678];

const extension: Generator = (layout, random) => {
  const cluster = layout.clusterBytes;
  const spot = layout.extensions.length > 0 && chance(random, 0.7) ? pick(random, layout.extensions) : null;
  if (spot === null) {
    const at = layout.extensionsEnd;
    switch (random.int(0, 3)) {
      case 0: {
        // Empty extensions of an unknown type up to the end of the cluster: no end marker anywhere.
        const length = Math.max(0, Math.min(cluster, layout.fileSize) - at);
        return { label: 'extension end marker missing (empty unknown extensions to the end of the cluster)', patches: [{ op: 'fill', at, length, hex: '1234567800000000' }] };
      }
      case 1: {
        const type = pick(random, EXTENSION_TYPES.slice(1));
        const length = pick(random, [0, 1, 8, 47, 48, 4096, cluster - at - 8, cluster, 0xffffffff]);
        return { label: `extension added: type 0x${type.toString(16)} length ${length}`, patches: [write(at, (BigInt(type) << 32n) | BigInt(length >>> 0), 8), { op: 'write', at: at + 8, hex: toHex(random.bytes(Math.min(64, Math.max(0, cluster - at - 8)))) }] };
      }
      default:
        return { label: 'extension end marker replaced by garbage', patches: [{ op: 'write', at, hex: toHex(random.bytes(8)) }] };
    }
  }
  switch (random.int(0, 4)) {
    case 0: {
      const length = pick(random, [0, spot.length - 1, spot.length + 1, spot.length + 8, cluster - spot.offset - 8, cluster - spot.offset - 7, cluster, 0x7fffffff, 0xffffffff]);
      return { label: `extension 0x${spot.type.toString(16)} length = ${length}`, patches: [write(spot.offset + 4, BigInt(length >>> 0), 4)] };
    }
    case 1: {
      const type = pick(random, EXTENSION_TYPES);
      return { label: `extension 0x${spot.type.toString(16)} type = 0x${type.toString(16)}`, patches: [write(spot.offset, BigInt(type), 4)] };
    }
    case 2:
      return { label: `extension 0x${spot.type.toString(16)} data garbled`, patches: [{ op: 'write', at: spot.offset + 8, hex: toHex(random.bytes(Math.min(spot.length, 96))) }] };
    default: {
      // Feature-name entries: kinds and bits out of range, names without a terminating NUL.
      const entry = spot.offset + 8 + 48 * random.int(0, Math.max(1, Math.floor(spot.length / 48)));
      return { label: `extension 0x${spot.type.toString(16)} entry garbled`, patches: [{ op: 'write', at: entry, hex: toHex(new Uint8Array([random.int(0, 256), random.int(0, 256)])) + '41'.repeat(46) }] };
    }
  }
};

const backingName: Generator = (layout, random) => {
  const header = layout.header;
  if (header.backingFileOffset === 0) return null;
  const name = pick(random, ['image.qcow2', '.', '/', '..', 'no-such-file', '/dev/null', `${'a/'.repeat(200)}x`, '\u0000bad']);
  const encoded = new TextEncoder().encode(name);
  const cluster = layout.clusterBytes;
  const room = cluster - header.backingFileOffset;
  const fits = encoded.subarray(0, Math.max(0, room));
  return {
    label: `backing file name = ${JSON.stringify(name)}`,
    patches: [{ op: 'write', at: header.backingFileOffset, hex: toHex(fits) }, write(16, BigInt(fits.length), 4)],
  };
};

/** A new value for an L1 entry (active or a snapshot's). */
function l1Value(layout: Layout, random: SeededRandom, current: bigint): { what: string; value: bigint } {
  const target = pick(random, pointerTargets(layout));
  switch (random.int(0, 6)) {
    case 0:
      return { what: 'reserved bits', value: current | (1n << BigInt(pick(random, [0, 1, 8, 56, 60, 62]))) };
    case 1:
      return { what: 'COPIED toggled', value: current ^ COPIED };
    case 2:
      return { what: 'zero', value: 0n };
    case 3:
      return { what: `${target.what} + 8`, value: BigInt(target.offset) + 8n };
    default:
      return { what: target.what, value: BigInt(target.offset) | (chance(random, 0.5) ? COPIED : 0n) };
  }
}

function l1Table(layout: Layout, random: SeededRandom, table: Region, name: string, bytes: Uint8Array): Mutation | null {
  if (table.length === 0) return null;
  const entries = table.length / 8;
  const nonzero: number[] = [];
  for (let index = 0; index < entries; index++) if (readBig(bytes, table.offset + index * 8, 8) !== 0n) nonzero.push(index);
  const index = nonzero.length > 0 && chance(random, 0.75) ? pick(random, nonzero) : chance(random, 0.5) ? entries - 1 : random.int(0, entries);
  const at = table.offset + index * 8;
  const { what, value } = l1Value(layout, random, readBig(bytes, at, 8));
  return { label: `${name} entry ${index} -> ${what}`, patches: [write(at, value, 8)] };
}

const l1Entry: Generator = (layout, random, bytes) => l1Table(layout, random, layout.l1, 'L1', bytes);

const snapshotL1Entry: Generator = (layout, random, bytes) => {
  if (layout.snapshotL1s.length === 0) return null;
  return l1Table(layout, random, pick(random, layout.snapshotL1s), 'snapshot L1', bytes);
};

/** A compressed-cluster descriptor (qcow2.txt "Compressed Clusters Descriptor"). */
function compressedDescriptor(layout: Layout, hostOffset: bigint, extraSectors: bigint): bigint {
  const offsetBits = BigInt(62 - (layout.header.clusterBits - 8));
  const offsetMask = (1n << offsetBits) - 1n;
  const sectorMask = (1n << (62n - offsetBits)) - 1n;
  return COMPRESSED | (hostOffset & offsetMask) | ((extraSectors & sectorMask) << offsetBits);
}

const l2Entry: Generator = (layout, random, bytes) => {
  if (layout.l2Entries.length === 0) return null;
  const spot = pick(random, layout.l2Entries);
  const current = readBig(bytes, spot.offset, 8);
  const target = pick(random, pointerTargets(layout));
  const label = (what: string): string => `L2 entry at 0x${spot.offset.toString(16)} (${spot.kind}) -> ${what}`;
  switch (random.int(0, 9)) {
    case 0:
      return { label: label('reserved bits'), patches: [write(spot.offset, current | (1n << BigInt(pick(random, [1, 2, 8, 56, 61]))), 8)] };
    case 1:
      return { label: label('COPIED toggled'), patches: [write(spot.offset, current ^ COPIED, 8)] };
    case 2:
      return { label: label('zero flag toggled'), patches: [write(spot.offset, current ^ 1n, 8)] };
    case 3:
      return { label: label('compressed bit set'), patches: [write(spot.offset, current | COMPRESSED, 8)] };
    case 4: {
      const sectors = pick(random, [0n, 1n, 2n, 1n << 20n, (1n << 30n) - 1n]);
      return { label: label(`compressed at ${target.what}, ${sectors} extra sectors`), patches: [write(spot.offset, compressedDescriptor(layout, BigInt(target.offset) + BigInt(random.int(0, 512)), sectors), 8)] };
    }
    case 5:
      if (layout.l2EntryBytes === 16) {
        const masks = pick(random, [0xffffffffffffffffn, 0x00000001_00000001n, 0xffffffff00000000n, 0x00000000ffffffffn, readBig(random.bytes(8), 0, 8)]);
        return { label: label(`extended L2 masks 0x${masks.toString(16)}`), patches: [write(spot.offset + 8, masks, 8)] };
      }
      return { label: label(`${target.what} + 8`), patches: [write(spot.offset, BigInt(target.offset) + 8n, 8)] };
    default:
      return { label: label(target.what), patches: [write(spot.offset, BigInt(target.offset) | (chance(random, 0.5) ? COPIED : 0n), 8)] };
  }
};

const compressedEntry: Generator = (layout, random) => {
  const compressed = layout.l2Entries.filter((spot) => spot.kind === 'compressed');
  if (compressed.length === 0) return null;
  const spot = pick(random, compressed);
  const choices: [string, bigint, bigint][] = [
    ['huge size', BigInt(spot.hostOffset), (1n << 30n) - 1n],
    ['size 0', BigInt(spot.hostOffset), 0n],
    ['offset + 1', BigInt(spot.hostOffset + 1), 1n],
    ['offset past end of file', BigInt(layout.fileSize + random.int(0, 4096)), 1n],
    ['offset into the header', BigInt(random.int(0, 512)), 2n],
    ['offset into the L1 table', BigInt(layout.l1.offset), 1n],
    ['offset into the refcount table', BigInt(layout.refcountTable.offset), 4n],
    ['straddling the end of file', BigInt(Math.max(0, layout.fileSize - 100)), 8n],
  ];
  const [what, hostOffset, sectors] = pick(random, choices);
  return { label: `compressed descriptor at 0x${spot.offset.toString(16)}: ${what}`, patches: [write(spot.offset, compressedDescriptor(layout, hostOffset, sectors), 8)] };
};

const refcountTableEntry: Generator = (layout, random, bytes) => {
  const table = layout.refcountTable;
  const entries = table.length / 8;
  const index = chance(random, 0.7) && layout.refcountBlocks.length > 0 ? random.int(0, layout.refcountBlocks.length) : random.int(0, Math.min(entries, 64));
  const at = table.offset + index * 8;
  const target = pick(random, pointerTargets(layout));
  const current = readBig(bytes, at, 8);
  const choices: [string, bigint][] = [
    ['zero', 0n],
    [target.what, BigInt(target.offset)],
    ['itself (the refcount table)', BigInt(table.offset)],
    ['reserved bits', current | 1n],
    ['huge', 1n << 62n],
    ['unaligned', BigInt(target.offset) + 512n],
  ];
  const [what, value] = pick(random, choices);
  return { label: `refcount table entry ${index} -> ${what}`, patches: [write(at, value, 8)] };
};

const refcountBlock: Generator = (layout, random) => {
  if (layout.refcountBlocks.length === 0) return null;
  const block = pick(random, layout.refcountBlocks);
  const cluster = layout.clusterBytes;
  switch (random.int(0, 4)) {
    case 0:
      return { label: `refcount block 0x${block.toString(16)} zeroed`, patches: [{ op: 'fill', at: block, length: cluster, hex: '00' }] };
    case 1:
      return { label: `refcount block 0x${block.toString(16)} all ones`, patches: [{ op: 'fill', at: block, length: cluster, hex: 'ff' }] };
    default: {
      const at = block + random.int(0, Math.min(cluster, 256));
      return { label: `refcount block 0x${block.toString(16)} bytes at 0x${at.toString(16)} garbled`, patches: [{ op: 'write', at, hex: toHex(random.bytes(random.int(1, 16))) }] };
    }
  }
};

/** The fixed part of a snapshot table entry (qcow2.txt "Snapshot table entry"). */
const SNAPSHOT_FIELDS: { name: string; offset: number; size: 2 | 4 | 8 }[] = [
  { name: 'l1_table_offset', offset: 0, size: 8 },
  { name: 'l1_size', offset: 8, size: 4 },
  { name: 'id_str_size', offset: 12, size: 2 },
  { name: 'name_size', offset: 14, size: 2 },
  { name: 'date_sec', offset: 16, size: 4 },
  { name: 'date_nsec', offset: 20, size: 4 },
  { name: 'vm_clock_nsec', offset: 24, size: 8 },
  { name: 'vm_state_size', offset: 32, size: 4 },
  { name: 'extra_data_size', offset: 36, size: 4 },
];

const snapshotEntry: Generator = (layout, random, bytes) => {
  if (layout.snapshots.length === 0) return null;
  const index = random.int(0, layout.snapshots.length);
  const spot = layout.snapshots[index];
  if (spot === undefined) return null;
  const field = pick(random, SNAPSHOT_FIELDS);
  const at = spot.offset + field.offset;
  const current = readBig(bytes, at, field.size);
  let values = fieldValues(layout, current, field.size);
  if (field.name === 'extra_data_size') values = [0n, 8n, 15n, 16n, 23n, 24n, 1024n, 1025n, 0xffffffffn, current - 1n, current + 1n, current + 8n];
  if (field.name === 'l1_table_offset') values = [...values, ...pointerTargets(layout).map((target) => BigInt(target.offset))];
  if (field.name === 'l1_size') values = [...values, 0x400000n, 0x400001n, BigInt(layout.l1.length / 8) * 1000n];
  const value = pick(random, values.filter((candidate) => candidate >= 0n));
  return { label: `snapshot ${index} ${field.name} = 0x${value.toString(16)}`, patches: [write(at, value, field.size)] };
};

const snapshotExtra: Generator = (layout, random, bytes) => {
  const withExtra = layout.snapshots.filter((spot) => spot.extraSize > 0);
  if (withExtra.length === 0) return null;
  const spot = pick(random, withExtra);
  const extra = spot.offset + 40;
  const fields: [string, number, number][] = [
    ['vm_state_size_large', 0, 8],
    ['disk_size', 8, 8],
    ['icount', 16, 8],
    ['cowbell magic', 24, 4],
    ['cowbell version/flags', 28, 2],
    ['cowbell parent id length', 30, 2],
    ['cowbell active L1', 32, 8],
  ];
  const usable = fields.filter(([, offset, size]) => offset + size <= spot.extraSize);
  if (usable.length === 0 || chance(random, 0.15)) {
    return { label: `snapshot extra data at 0x${extra.toString(16)} garbled`, patches: [{ op: 'write', at: extra, hex: toHex(random.bytes(Math.min(spot.extraSize, 48))) }] };
  }
  const [name, offset, size] = pick(random, usable);
  const value = pick(random, fieldValues(layout, readBig(bytes, extra + offset, size), size));
  return { label: `snapshot extra ${name} = 0x${value.toString(16)}`, patches: [write(extra + offset, value, size)] };
};

const snapshotCount: Generator = (layout, random) => {
  const count = layout.header.snapshotCount;
  const value = pick(random, [0, 1, count - 1, count + 1, count + 2, count * 2, 65535, 65536, 65537, 0xffffffff].filter((candidate) => candidate >= 0));
  return { label: `header nb_snapshots = ${value}`, patches: [write(60, BigInt(value), 4)] };
};

const truncate: Generator = (layout, random) => {
  const size = pick(random, truncationPoints(layout));
  return { label: `truncated to ${size} bytes`, patches: [{ op: 'truncate', size }] };
};

const byteFlips: Generator = (layout, random) => {
  const patches: Patch[] = [];
  const count = random.int(1, 9);
  const metadata = layout.regions.filter((region) => region.what !== 'data cluster' && region.length > 0);
  for (let flip = 0; flip < count; flip++) {
    const region = chance(random, 0.8) ? pick(random, metadata) : { offset: 0, length: layout.fileSize };
    const at = region.offset + random.int(0, Math.max(1, Math.min(region.length, layout.fileSize - region.offset)));
    patches.push({ op: 'write', at, hex: toHex(new Uint8Array([random.int(0, 256)])) });
  }
  return { label: `${count} random bytes`, patches };
};

const splice: Generator = (layout, random) => {
  const source = pick(random, layout.regions);
  const target = pick(random, layout.regions);
  if (chance(random, 0.3)) {
    const from = random.int(0, layout.fileSize);
    const to = random.int(0, layout.fileSize);
    const length = random.int(1, 4096);
    return { label: `splice ${length} bytes 0x${from.toString(16)} -> 0x${to.toString(16)}`, patches: [{ op: 'copy', from, to, length }] };
  }
  const length = Math.max(8, Math.min(source.length, target.length || layout.clusterBytes, layout.clusterBytes));
  return { label: `splice ${source.what} over ${target.what}`, patches: [{ op: 'copy', from: source.offset, to: target.offset, length }] };
};

const GENERATORS: [Generator, number][] = [
  [headerField, 6],
  [extension, 3],
  [backingName, 1],
  [l1Entry, 4],
  [l2Entry, 6],
  [compressedEntry, 2],
  [refcountTableEntry, 3],
  [refcountBlock, 2],
  [snapshotEntry, 4],
  [snapshotExtra, 2],
  [snapshotCount, 1],
  [snapshotL1Entry, 2],
  [truncate, 3],
  [byteFlips, 3],
  [splice, 2],
];

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

/** Systematic cases: every header field at every boundary value, and a truncation at every boundary. */
export function systematicMutations(layout: Layout, seedBytes: Uint8Array): Mutation[] {
  const mutations: Mutation[] = [];
  for (const field of layout.headerFields) {
    const current = readBig(seedBytes, field.offset, field.size);
    const values = new Set(fieldValues(layout, current, field.size));
    if (field.name.endsWith('_features')) for (let bit = 0n; bit < 64n; bit++) values.add(current ^ (1n << bit));
    for (const value of values) {
      if (value === current) continue;
      mutations.push({ label: `header ${field.name} = 0x${value.toString(16)}`, patches: [write(field.offset, value, field.size)] });
    }
  }
  for (const size of truncationPoints(layout)) mutations.push({ label: `truncated to ${size} bytes`, patches: [{ op: 'truncate', size }] });
  return mutations;
}
