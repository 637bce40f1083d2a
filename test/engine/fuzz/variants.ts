/**
 * Every way the fuzzer knows to damage one structure of a seed image. The random phase picks one
 * variant of one structure; the systematic phase runs all variants of chosen structures.
 */
import { withCowbellRecord, type CowbellRecord } from '../../../src/shared/qcow2/format/cowbell-record.ts';
import { parseSnapshotTable, serializeSnapshotTable, type SnapshotEntry } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import type { SeededRandom } from '../../helpers/seeded-random.ts';
import type { ExtensionSpot, HeaderField, L2EntrySpot, Layout, Region, SnapshotSpot } from './layout.ts';
import { readField, toHex, writeField, type Mutation } from './patches.ts';

const U64_MASK = (1n << 64n) - 1n;
const COPIED = 1n << 63n;
const COMPRESSED = 1n << 62n;

const hexOf = (value: bigint | number): string => `0x${value.toString(16)}`;

/** Boundary values for a field of `size` bytes that currently holds `current`. */
export function fieldValues(layout: Layout, current: bigint, size: number): bigint[] {
  const cluster = BigInt(layout.clusterBytes);
  const file = BigInt(layout.fileSize);
  const max = (1n << BigInt(size * 8)) - 1n;
  const values = [0n, 1n, 2n, 7n, 8n, 9n, 16n, 21n, 22n, 64n, 65n, 511n, 512n, 513n, 0xffffn, 0x10000n, current - 1n, current + 1n, current * 2n, current + cluster, current - cluster, max, max - 1n, max >> 1n, (max >> 1n) + 1n];
  if (size >= 4) values.push(cluster - 1n, cluster, cluster + 1n, file, file - 1n, file + cluster, 0x7fffffffn, 0x80000000n, 0xfffffff8n, 0x100000n, 0x1000000n);
  if (size === 8) values.push(1n << 32n, (1n << 32n) + cluster, (1n << 53n) - 1n, 1n << 53n, (1n << 55n) + cluster, 1n << 56n, 1n << 62n, 1n << 63n, U64_MASK - cluster + 1n);
  return [...new Set(values.filter((value) => value >= 0n && value <= max && value !== current))];
}

export interface PointerTarget {
  what: string;
  offset: number;
}

/**
 * Places a pointer can aim at: every structure (or, when `distinct`, the first of each kind and a
 * second L2 table), the middle of a cluster, the end of the file and beyond, absurdly far.
 */
export function pointerTargets(layout: Layout, distinct: boolean): PointerTarget[] {
  const cluster = layout.clusterBytes;
  const endAligned = Math.ceil(layout.fileSize / cluster) * cluster;
  const targets: PointerTarget[] = [
    { what: 'header', offset: 0 },
    { what: 'unaligned', offset: cluster + (cluster > 512 ? 512 : 256) },
    { what: 'end of file', offset: endAligned },
    { what: 'past end of file', offset: endAligned + 16 * cluster },
    { what: 'past 4 GiB', offset: 2 ** 32 },
    { what: 'near 2^56', offset: 2 ** 55 },
  ];
  const seen = new Map<string, number>();
  for (const region of layout.regions) {
    const count = seen.get(region.what) ?? 0;
    seen.set(region.what, count + 1);
    if (distinct && count > (region.what === 'L2 table' ? 1 : 0)) continue;
    targets.push({ what: count === 0 ? region.what : `${region.what} #${count + 1}`, offset: region.offset });
  }
  return targets;
}

export function headerFieldVariants(layout: Layout, bytes: Uint8Array, field: HeaderField): Mutation[] {
  const current = readField(bytes, field.offset, field.size);
  const values = new Set(fieldValues(layout, current, field.size));
  if (field.name.endsWith('_features')) for (let bit = 0n; bit < 64n; bit++) values.add(current ^ (1n << bit));
  if (field.name === 'magic') values.add(current ^ 1n);
  return [...values].map((value) => ({ label: `header ${field.name} = ${hexOf(value)}`, patches: [writeField(field.offset, value, field.size)] }));
}

/**
 * The largest disk the L1 table's clusters can describe: l1_size grown to fill them (up to QEMU's
 * limit) and the virtual size raised to match. A small file may claim petabytes of sparse disk.
 */
export function largestDiskVariants(layout: Layout): Mutation[] {
  const cluster = layout.clusterBytes;
  const l1End = Math.min(Math.ceil((layout.l1.offset + Math.max(8, layout.l1.length)) / cluster) * cluster, layout.fileSize);
  const entries = Math.min((32 * 1024 * 1024) / 8, Math.floor((l1End - layout.l1.offset) / 8));
  const span = (cluster / layout.l2EntryBytes) * cluster;
  const largest = Math.min(2 ** 52, entries * span);
  return [largest, largest - 512].map((size) => ({
    label: `header l1_size = ${entries}, size = ${size} (the largest disk its L1 clusters describe)`,
    patches: [writeField(36, BigInt(entries), 4), writeField(24, BigInt(size), 8)],
  }));
}

const EXTENSION_TYPES = [0, 0xe2792aca, 0x6803f857, 0x23852875, 0x0537be77, 0x44415441, 0x12345678];

/** Damage to one extension: its length, its type, its data (feature-name entries included). */
export function extensionVariants(layout: Layout, spot: ExtensionSpot, random: SeededRandom): Mutation[] {
  const cluster = layout.clusterBytes;
  const name = `extension ${hexOf(spot.type)}`;
  const lengths = [0, spot.length - 1, spot.length + 1, spot.length + 8, cluster - spot.offset - 8, cluster - spot.offset - 7, cluster, 0x7fffffff, 0xffffffff];
  const variants: Mutation[] = [
    ...lengths.filter((length) => length >= 0 && length !== spot.length).map((length) => ({ label: `${name} length = ${length}`, patches: [writeField(spot.offset + 4, BigInt(length), 4)] })),
    ...EXTENSION_TYPES.filter((type) => type !== spot.type).map((type) => ({ label: `${name} type = ${hexOf(type)}`, patches: [writeField(spot.offset, BigInt(type), 4)] })),
    { label: `${name} data garbled`, patches: [{ op: 'write', at: spot.offset + 8, hex: toHex(random.bytes(Math.min(spot.length, 96))) }] },
  ];
  // Feature-name entries: kinds and bits out of range, names without a terminating NUL.
  for (let entry = 0; entry + 48 <= spot.length && entry < 48 * 4; entry += 48) {
    const at = spot.offset + 8 + entry;
    variants.push({ label: `${name} entry ${entry / 48} garbled`, patches: [{ op: 'write', at, hex: toHex(new Uint8Array([random.int(0, 256), random.int(0, 256)])) + '41'.repeat(46) }] });
  }
  return variants;
}

/** Damage where the extension list ends: no end marker, an added extension, garbage. */
export function extensionEndVariants(layout: Layout, random: SeededRandom): Mutation[] {
  const cluster = layout.clusterBytes;
  const at = layout.extensionsEnd;
  const room = Math.max(0, Math.min(cluster, layout.fileSize) - at);
  const variants: Mutation[] = [
    // Empty extensions of an unknown type up to the end of the cluster: no end marker anywhere.
    { label: 'extension end marker missing (empty unknown extensions to the end of the cluster)', patches: [{ op: 'fill', at, length: room, hex: '1234567800000000' }] },
    { label: 'extension end marker replaced by garbage', patches: [{ op: 'write', at, hex: toHex(random.bytes(8)) }] },
  ];
  for (const type of EXTENSION_TYPES.slice(1)) {
    for (const length of [0, 1, 8, 47, 48, 4096, cluster - at - 8, cluster, 0xffffffff]) {
      if (length < 0) continue;
      variants.push({
        label: `extension added: type ${hexOf(type)} length ${length}`,
        patches: [writeField(at, (BigInt(type) << 32n) | BigInt(length), 8), { op: 'write', at: at + 8, hex: toHex(random.bytes(Math.min(64, Math.max(0, cluster - at - 8)))) }],
      });
    }
  }
  return variants;
}

export function backingNameVariants(layout: Layout): Mutation[] {
  const header = layout.header;
  if (header.backingFileOffset === 0) return [];
  const room = layout.clusterBytes - header.backingFileOffset;
  return ['image.qcow2', '.', '/', '..', 'no-such-file', '/dev/null', `${'a/'.repeat(200)}x`, '\u0000bad', 'ok\u0000bad'].map((name) => {
    const fits = new TextEncoder().encode(name).subarray(0, Math.max(0, room));
    return { label: `backing file name = ${JSON.stringify(name)}`, patches: [{ op: 'write', at: header.backingFileOffset, hex: toHex(fits) }, writeField(16, BigInt(fits.length), 4)] };
  });
}

/** New values for L1 entry `index` of `table` (the active L1 or a snapshot's). */
export function l1EntryVariants(bytes: Uint8Array, table: Region, name: string, index: number, targets: PointerTarget[]): Mutation[] {
  const at = table.offset + index * 8;
  const current = readField(bytes, at, 8);
  const label = (what: string): string => `${name} entry ${index} -> ${what}`;
  const variants: Mutation[] = [
    ...[0, 1, 8, 56, 60, 62].map((bit) => ({ label: label(`reserved bit ${bit}`), patches: [writeField(at, current | (1n << BigInt(bit)), 8)] })),
    { label: label('COPIED toggled'), patches: [writeField(at, current ^ COPIED, 8)] },
    { label: label('zero'), patches: [writeField(at, 0n, 8)] },
  ];
  for (const target of targets) {
    variants.push({ label: label(target.what), patches: [writeField(at, BigInt(target.offset) | COPIED, 8)] });
    variants.push({ label: label(`${target.what} + 8`), patches: [writeField(at, BigInt(target.offset) + 8n, 8)] });
  }
  return variants;
}

/** A compressed-cluster descriptor (qcow2.txt "Compressed Clusters Descriptor"). */
function compressedDescriptor(layout: Layout, hostOffset: bigint, extraSectors: bigint): bigint {
  const offsetBits = BigInt(62 - (layout.header.clusterBits - 8));
  const offsetMask = (1n << offsetBits) - 1n;
  const sectorMask = (1n << (62n - offsetBits)) - 1n;
  return COMPRESSED | (hostOffset & offsetMask) | ((extraSectors & sectorMask) << offsetBits);
}

export function l2EntryVariants(layout: Layout, bytes: Uint8Array, spot: L2EntrySpot, targets: PointerTarget[], random: SeededRandom): Mutation[] {
  const current = readField(bytes, spot.offset, 8);
  const label = (what: string): string => `L2 entry at ${hexOf(spot.offset)} (${spot.kind}) -> ${what}`;
  const write = (what: string, value: bigint): Mutation => ({ label: label(what), patches: [writeField(spot.offset, value, 8)] });
  const variants: Mutation[] = [
    ...[1, 2, 8, 56, 61].map((bit) => write(`reserved bit ${bit}`, current | (1n << BigInt(bit)))),
    write('COPIED toggled', current ^ COPIED),
    write('zero flag toggled', current ^ 1n),
    write('compressed bit set', current | COMPRESSED),
  ];
  for (const target of targets) {
    variants.push(write(target.what, BigInt(target.offset) | COPIED), write(`${target.what} + 8`, BigInt(target.offset) + 8n));
    for (const sectors of [0n, 1n, 1n << 20n, (1n << 30n) - 1n]) {
      variants.push(write(`compressed at ${target.what} + 3, ${sectors} extra sectors`, compressedDescriptor(layout, BigInt(target.offset) + 3n, sectors)));
    }
  }
  if (layout.l2EntryBytes === 16) {
    for (const masks of [U64_MASK, 0x00000001_00000001n, 0xffffffff00000000n, 0x00000000ffffffffn, readField(random.bytes(8), 0, 8)]) {
      variants.push({ label: label(`extended L2 masks ${hexOf(masks)}`), patches: [writeField(spot.offset + 8, masks, 8)] });
    }
  }
  return variants;
}

export function compressedVariants(layout: Layout, spot: L2EntrySpot): Mutation[] {
  const choices: [string, number, bigint][] = [
    ['huge size', spot.hostOffset, (1n << 30n) - 1n],
    ['size 0', spot.hostOffset, 0n],
    ['offset + 1', spot.hostOffset + 1, 1n],
    ['offset past end of file', layout.fileSize + 77, 1n],
    ['offset into the header', 100, 2n],
    ['offset into the L1 table', layout.l1.offset, 1n],
    ['offset into the refcount table', layout.refcountTable.offset, 4n],
    ['straddling the end of file', Math.max(0, layout.fileSize - 100), 8n],
  ];
  return choices.map(([what, hostOffset, sectors]) => ({
    label: `compressed descriptor at ${hexOf(spot.offset)}: ${what}`,
    patches: [writeField(spot.offset, compressedDescriptor(layout, BigInt(hostOffset), sectors), 8)],
  }));
}

export function refcountEntryVariants(layout: Layout, bytes: Uint8Array, index: number, targets: PointerTarget[]): Mutation[] {
  const at = layout.refcountTable.offset + index * 8;
  const current = readField(bytes, at, 8);
  const label = (what: string): string => `refcount table entry ${index} -> ${what}`;
  const variants: Mutation[] = [
    { label: label('zero'), patches: [writeField(at, 0n, 8)] },
    { label: label('itself (the refcount table)'), patches: [writeField(at, BigInt(layout.refcountTable.offset), 8)] },
    { label: label('reserved bits'), patches: [writeField(at, current | 1n, 8)] },
    { label: label('huge'), patches: [writeField(at, 1n << 62n, 8)] },
  ];
  for (const target of targets) variants.push({ label: label(target.what), patches: [writeField(at, BigInt(target.offset), 8)] });
  return variants;
}

export function refcountBlockVariants(layout: Layout, block: number, random: SeededRandom): Mutation[] {
  const cluster = layout.clusterBytes;
  const name = `refcount block ${hexOf(block)}`;
  const at = block + random.int(0, Math.min(cluster, 256));
  return [
    { label: `${name} zeroed`, patches: [{ op: 'fill', at: block, length: cluster, hex: '00' }] },
    { label: `${name} all ones`, patches: [{ op: 'fill', at: block, length: cluster, hex: 'ff' }] },
    { label: `${name} bytes at ${hexOf(at)} garbled`, patches: [{ op: 'write', at, hex: toHex(random.bytes(random.int(1, 16))) }] },
  ];
}

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

export function snapshotFieldVariants(layout: Layout, bytes: Uint8Array, index: number, spot: SnapshotSpot, targets: PointerTarget[]): Mutation[] {
  const variants: Mutation[] = [];
  for (const field of SNAPSHOT_FIELDS) {
    const at = spot.offset + field.offset;
    const current = readField(bytes, at, field.size);
    let values = fieldValues(layout, current, field.size);
    if (field.name === 'extra_data_size') values = [0n, 8n, 15n, 16n, 23n, 24n, 1024n, 1025n, 0xffffffffn, current - 1n, current + 1n, current + 8n];
    if (field.name === 'l1_table_offset') values = [...values, ...targets.map((target) => BigInt(target.offset))];
    if (field.name === 'l1_size') values = [...values, 0x400000n, 0x400001n, BigInt(layout.l1.length / 8) * 1000n];
    for (const value of new Set(values)) {
      if (value < 0n || value === current) continue;
      variants.push({ label: `snapshot ${index} ${field.name} = ${hexOf(value)}`, patches: [writeField(at, value, field.size)] });
    }
  }
  return variants;
}

/** QEMU's extra data fields, then Cowbell's tree record after them. */
const EXTRA_FIELDS: [string, number, number][] = [
  ['vm_state_size_large', 0, 8],
  ['disk_size', 8, 8],
  ['icount', 16, 8],
  ['cowbell magic', 24, 4],
  ['cowbell version/flags', 28, 2],
  ['cowbell parent id length', 30, 2],
  ['cowbell active L1', 32, 8],
];

export function snapshotExtraVariants(layout: Layout, bytes: Uint8Array, spot: SnapshotSpot, random: SeededRandom): Mutation[] {
  const extra = spot.offset + 40;
  const variants: Mutation[] = [{ label: `snapshot extra data at ${hexOf(extra)} garbled`, patches: [{ op: 'write', at: extra, hex: toHex(random.bytes(Math.min(spot.extraSize, 48))) }] }];
  for (const [name, offset, size] of EXTRA_FIELDS) {
    if (offset + size > spot.extraSize) continue;
    for (const value of fieldValues(layout, readField(bytes, extra + offset, size), size)) {
      variants.push({ label: `snapshot extra ${name} = ${hexOf(value)}`, patches: [writeField(extra + offset, value, size)] });
    }
  }
  return variants;
}

/**
 * Whole-table rewrites with the engine's own serializer, for what byte patches cannot reach:
 * tree records whose parents form a loop (a snapshot its own parent, two snapshots each other's),
 * every snapshot marked as the current state's parent, duplicate names and ids.
 */
export function snapshotTableVariants(layout: Layout, bytes: Uint8Array): Mutation[] {
  const table = layout.snapshotTable;
  if (table === null) return [];
  const entries = parseSnapshotTable(bytes.subarray(table.offset), layout.header.snapshotCount, layout.header.version);
  const rewrite = (label: string, changed: SnapshotEntry[]): Mutation => ({ label, patches: [{ op: 'write', at: table.offset, hex: toHex(serializeSnapshotTable(changed)) }] });
  const record = (entry: SnapshotEntry, update: Partial<CowbellRecord>): SnapshotEntry => {
    const base: CowbellRecord = { parentKnown: true, parentId: '', currentParent: false, activeL1Offset: 0, currentSinceSec: 0, currentSinceNsec: 0 };
    return { ...entry, extraData: withCowbellRecord(entry, { ...base, ...update }, layout.header.virtualSize) };
  };
  const variants: Mutation[] = [];
  entries.forEach((entry, index) => {
    variants.push(rewrite(`snapshot ${index} is its own parent`, entries.map((other) => (other === entry ? record(other, { parentId: entry.id }) : other))));
    const next = entries[(index + 1) % entries.length];
    if (next !== undefined && next !== entry) {
      variants.push(rewrite(`snapshots ${index} and ${(index + 1) % entries.length} are each other's parent`, entries.map((other) => (other === entry ? record(other, { parentId: next.id }) : other === next ? record(other, { parentId: entry.id }) : other))));
    }
  });
  variants.push(rewrite('every snapshot is the current parent', entries.map((entry) => record(entry, { currentParent: true, activeL1Offset: layout.l1.offset, currentSinceSec: 0xffffffff }))));
  variants.push(rewrite('every snapshot has the same name and id', entries.map((entry) => ({ ...entry, id: '1', name: 'same' }))));
  variants.push(rewrite('empty names and ids', entries.map((entry) => ({ ...entry, id: '', name: '' }))));
  return variants;
}
