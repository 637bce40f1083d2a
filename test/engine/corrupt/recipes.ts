/**
 * The damaged-image corpus (issue 21): each case is a base image from bases.ts and one kind of
 * damage, after the recipes of qemu-iotests 029, 036, 039, 060, 061, 066, 080, 108, 112, 138,
 * 217, 244, 261, 271, 274 and 287 — which field is poked with which value, written here from
 * those facts. Offsets come from each image's own layout, not from assumptions about it.
 */
import * as fs from 'node:fs';
import { appendCluster, layout, readU64, setIncompatibleBits, setRefcount, writeBytes, writeU16, writeU32, writeU64 } from '../../helpers/qcow2-poke.ts';
import {
  activeL2,
  botchV2ToV3,
  compressedEntries,
  COPIED,
  endCluster,
  firstDataCluster,
  headerLength,
  refcountBlock,
  setL2Entry,
  snapshotEntry,
  snapshotL2,
  u64,
} from './damage.ts';

export interface CorruptCase {
  /** `<iotest>-<damage>-<base>`, unique. */
  name: string;
  base: string;
  damage(file: string): void;
  /** qemu-img check -r all takes seconds to tens of seconds on this damage: the repair comparison is left out. */
  slowQemuRepair?: boolean;
}

interface Damage {
  iotest: string;
  name: string;
  bases: string[];
  damage(file: string): void;
  slowQemuRepair?: boolean;
}

const HEADER = ['v3', 'v3-snap', 'v2-snap'];
const V3 = ['v3', 'v3-snap'];
const SNAPSHOTS = ['v3-snap', 'v2-snap'];
const DATA = ['v3', 'v3-snap', 'v2-snap', 'v3-512'];

const clusterOf = (file: string, offset: number): number => offset / layout(file).clusterBytes;
const dataRefcount = (file: string, value: number): void => setRefcount(file, clusterOf(file, firstDataCluster(file)), value);
const bit = (n: number): bigint => 1n << BigInt(n);

const DAMAGES: Damage[] = [
  // 080: input validation of the header and the tables it names.
  { iotest: '080', name: 'header-size-ffffffff', bases: V3, damage: (f) => writeU32(f, 100, 0xffffffff) },
  { iotest: '080', name: 'header-size-7fffffff', bases: V3, damage: (f) => writeU32(f, 100, 0x7fffffff) },
  {
    iotest: '080',
    name: 'huge-unknown-extension',
    bases: HEADER,
    damage: (f) => {
      const at = headerLength(f);
      writeU64(f, 8, 0xffff_ffff_ffff_ffffn);
      writeU32(f, at, 0x12345678);
      writeU32(f, at + 4, 0x7fffffff);
    },
  },
  {
    iotest: '080',
    name: 'unknown-extension-over-backing-name',
    bases: V3,
    damage: (f) => {
      const at = headerLength(f);
      writeU64(f, 8, BigInt(at + 4));
      writeU32(f, 16, 8);
      writeU32(f, at, 0x12345678);
      writeU32(f, at + 4, 0x7fffffff);
    },
  },
  { iotest: '080', name: 'refcount-table-clusters-ffffffff', bases: HEADER, damage: (f) => writeU32(f, 56, 0xffffffff) },
  { iotest: '080', name: 'refcount-table-clusters-20001', bases: V3, damage: (f) => writeU32(f, 56, 0x20001) },
  { iotest: '080', name: 'misaligned-refcount-table', bases: HEADER, damage: (f) => writeU64(f, 48, 0x1234_5678_90ab_cdefn) },
  {
    iotest: '080',
    name: 'huge-refcount-table-offset',
    bases: V3,
    damage: (f) => {
      writeU64(f, 48, 0xffff_ffff_ffff_0000n);
      writeU32(f, 56, 0x7f);
    },
  },
  { iotest: '080', name: 'snapshot-count-ffffffff', slowQemuRepair: true, bases: HEADER, damage: (f) => writeU32(f, 60, 0xffffffff) },
  { iotest: '080', name: 'snapshot-count-7fffffff', slowQemuRepair: true, bases: V3, damage: (f) => writeU32(f, 60, 0x7fffffff) },
  {
    iotest: '080',
    name: 'huge-snapshot-table-offset',
    bases: HEADER,
    damage: (f) => {
      writeU64(f, 64, 0xffff_ffff_ffff_0000n);
      writeU32(f, 60, 0xffff);
    },
  },
  {
    iotest: '080',
    name: 'misaligned-snapshot-table-offset',
    bases: V3,
    damage: (f) => {
      writeU64(f, 64, 0x1234_5678_90ab_cdefn);
      writeU32(f, 60, 0);
    },
  },
  {
    iotest: '080',
    name: 'snapshot-table-size-limit',
    slowQemuRepair: true,
    bases: ['v3', 'v2-snap'],
    damage: (f) => {
      writeU64(f, 64, 0x100_0000n);
      writeU32(f, 60, 0x10000);
    },
  },
  { iotest: '080', name: 'l1-size-ffffffff', bases: HEADER, damage: (f) => writeU32(f, 36, 0xffffffff) },
  { iotest: '080', name: 'l1-size-7fffffff', bases: V3, damage: (f) => writeU32(f, 36, 0x7fffffff) },
  {
    iotest: '080',
    name: 'huge-l1-offset',
    bases: HEADER,
    damage: (f) => {
      writeU64(f, 40, 0x7fff_ffff_ffff_0000n);
      writeU32(f, 36, 0xffff);
    },
  },
  {
    iotest: '080',
    name: 'misaligned-l1-offset',
    bases: V3,
    damage: (f) => {
      writeU64(f, 40, 0x1234_5678_90ab_cdefn);
      writeU32(f, 36, 1);
    },
  },
  { iotest: '080', name: 'l1-size-0-with-snapshot', bases: SNAPSHOTS, damage: (f) => writeU32(f, 36, 0) },
  {
    iotest: '080',
    name: 'huge-backing-name-size',
    bases: V3,
    damage: (f) => {
      writeU64(f, 8, 0x1000n);
      writeU32(f, 16, 0xffffffff);
    },
  },
  { iotest: '080', name: 'l2-entry-huge-offset-compressed-bit', bases: DATA, damage: (f) => setL2Entry(f, 0, 0xbfff_ffff_ffff_0000n) },
  { iotest: '080', name: 'l2-entry-huge-offset', bases: DATA, damage: (f) => setL2Entry(f, 0, 0x8000_00ff_ffff_0000n) },
  { iotest: '080', name: 'snapshot-l1-offset-unaligned', bases: SNAPSHOTS, damage: (f) => writeU64(f, snapshotEntry(f, 0), 0x400200n) },
  { iotest: '080', name: 'snapshot-l1-size-huge', bases: SNAPSHOTS, damage: (f) => writeU32(f, snapshotEntry(f, 0) + 8, 0x10000000) },

  // 108: repairs that cannot trust the on-disk refcount structures.
  {
    iotest: '108',
    name: 'no-refcount-table',
    bases: HEADER,
    damage: (f) => {
      writeU64(f, 48, 0n);
      writeU32(f, 56, 0);
    },
  },
  {
    iotest: '108',
    name: 'unreferenced-data-cluster',
    bases: ['v3', 'v3-512'],
    damage: (f) => {
      const cluster = appendCluster(f);
      const { clusterBytes } = layout(f);
      writeBytes(f, cluster * clusterBytes, new Uint8Array(512).fill(42));
      // The first free entry of the first L2 table now maps the new, unreferenced cluster.
      const l2 = activeL2(f);
      let slot = 0;
      while (readU64(f, l2 + slot * 8) !== 0n) slot++;
      setL2Entry(f, slot, COPIED | BigInt(cluster * clusterBytes));
    },
  },
  {
    iotest: '108',
    name: 'refblock-beyond-end-marked-used',
    bases: ['v3', 'v3-snap'],
    damage: (f) => {
      const { clusterBytes, refcountTableOffset } = layout(f);
      const beyond = endCluster(f) + 16 * clusterBytes;
      writeU64(f, refcountTableOffset + 8, BigInt(beyond));
      setRefcount(f, beyond / clusterBytes, 1);
    },
  },
  { iotest: '108', name: 'refblock-beyond-end-unallocated', bases: ['v3', 'v3-snap'], damage: (f) => writeU64(f, layout(f).refcountTableOffset + 8, BigInt(endCluster(f) + 16 * layout(f).clusterBytes)) },
  { iotest: '108', name: 'refblock-signed-overflow', bases: ['v3', 'v3-snap'], damage: (f) => writeU64(f, layout(f).refcountTableOffset + 8, 0x7fff_ffff_ffff_0000n) },
  { iotest: '108', name: 'refblock-unsigned-overflow', bases: ['v3', 'v3-snap'], damage: (f) => writeU64(f, layout(f).refcountTableOffset + 8, 0xffff_ffff_ffff_0000n) },

  // 060: overlapping metadata and unaligned references.
  { iotest: '060', name: 'l2-reference-into-l1', bases: DATA, damage: (f) => writeU64(f, layout(f).l1Offset, COPIED | BigInt(layout(f).l1Offset)) },
  { iotest: '060', name: 'data-reference-into-refcount-block', bases: DATA, damage: (f) => setL2Entry(f, 0, COPIED | BigInt(refcountBlock(f))) },
  { iotest: '060', name: 'l2-reference-into-refcount-table', bases: ['v3', 'v3-snap'], damage: (f) => writeU64(f, layout(f).l1Offset, COPIED | BigInt(layout(f).refcountTableOffset)) },
  { iotest: '060', name: 'data-reference-into-inactive-l2', bases: SNAPSHOTS, damage: (f) => setL2Entry(f, 0, COPIED | BigInt(activeL2(f)), snapshotL2(f, 0)) },
  { iotest: '060', name: 'data-reference-into-active-l2', bases: DATA, damage: (f) => setL2Entry(f, 1, COPIED | BigInt(activeL2(f))) },
  { iotest: '060', name: 'data-reference-into-snapshot-table', bases: SNAPSHOTS, damage: (f) => setL2Entry(f, 0, COPIED | BigInt(Number(readU64(f, 64)))) },
  { iotest: '060', name: 'l2-refcount-zero', bases: DATA, damage: (f) => setRefcount(f, clusterOf(f, activeL2(f)), 0) },
  { iotest: '060', name: 'data-refcount-zero', bases: DATA, damage: (f) => dataRefcount(f, 0) },
  { iotest: '060', name: 'refcount-block-refcount-zero', bases: ['v3', 'v3-snap'], damage: (f) => setRefcount(f, clusterOf(f, refcountBlock(f)), 0) },
  { iotest: '060', name: 'unaligned-l2-entry', bases: ['v3', 'v3-snap', 'v2-snap'], damage: (f) => setL2Entry(f, 0, COPIED | BigInt(firstDataCluster(f) + 0x2a00)) },
  { iotest: '060', name: 'unaligned-preallocated-zero-cluster', bases: V3, damage: (f) => setL2Entry(f, 0, COPIED | BigInt(firstDataCluster(f) + 0x2a00) | 1n) },
  { iotest: '060', name: 'unaligned-refcount-table-entry', bases: ['v3', 'v3-snap'], damage: (f) => writeU64(f, layout(f).refcountTableOffset, BigInt(refcountBlock(f) + 0x2a00)) },
  { iotest: '060', name: 'unaligned-l1-entry', bases: ['v3', 'v3-snap', 'v2-snap'], damage: (f) => writeU64(f, layout(f).l1Offset, COPIED | BigInt(activeL2(f) + 0x2a00)) },
  { iotest: '060', name: 'l1-reserved-bits', bases: V3, damage: (f) => writeU64(f, layout(f).l1Offset, readU64(f, layout(f).l1Offset) | 0x1n) },
  { iotest: '060', name: 'l2-reserved-bits', bases: V3, damage: (f) => setL2Entry(f, 0, readU64(f, activeL2(f)) | 0x100n) },
  {
    iotest: '060',
    name: 'compressed-cluster-beyond-eof',
    bases: ['v3-compressed', 'v3-zstd'],
    damage: (f) => {
      const first = compressedEntries(f)[0];
      if (first === undefined) throw new Error('no compressed cluster');
      const { clusterBytes } = layout(f);
      const bits = BigInt(62 - (Math.log2(clusterBytes) - 8));
      writeU64(f, first.position, (1n << 62n) | (BigInt(first.sectors - 1) << bits) | BigInt(endCluster(f) + 4 * clusterBytes));
    },
  },
  {
    iotest: '060',
    name: 'compressed-size-max',
    bases: ['v3-compressed', 'v3-zstd'],
    damage: (f) => {
      const first = compressedEntries(f)[0];
      if (first === undefined) throw new Error('no compressed cluster');
      const bits = BigInt(62 - (Math.log2(layout(f).clusterBytes) - 8));
      writeU64(f, first.position, readU64(f, first.position) | (((1n << BigInt(Math.log2(layout(f).clusterBytes) - 8)) - 1n) << bits));
    },
  },
  { iotest: '060', name: 'snapshot-l1-on-active-l1', bases: SNAPSHOTS, damage: (f) => writeU64(f, snapshotEntry(f, 0), BigInt(layout(f).l1Offset)) },
  { iotest: '060', name: 'snapshot-l1-on-refcount-table', bases: SNAPSHOTS, damage: (f) => writeU64(f, snapshotEntry(f, 0), BigInt(layout(f).refcountTableOffset)) },
  { iotest: '060', name: 'two-l1-entries-one-l2', bases: ['v3-512'], damage: (f) => writeU64(f, layout(f).l1Offset + 8, readU64(f, layout(f).l1Offset)) },

  // 036: feature bits.
  { iotest: '036', name: 'unknown-incompatible-bit', bases: V3, damage: (f) => setIncompatibleBits(f, bit(63)) },
  { iotest: '036', name: 'unknown-compatible-bit', bases: V3, damage: (f) => writeU64(f, 80, readU64(f, 80) | bit(63)) },
  { iotest: '036', name: 'unknown-autoclear-bit', bases: V3, damage: (f) => writeU64(f, 88, readU64(f, 88) | bit(63)) },
  { iotest: '036', name: 'corrupt-bit', bases: V3, damage: (f) => setIncompatibleBits(f, bit(1)) },
  { iotest: '036', name: 'dirty-bit-without-lazy-refcounts', bases: V3, damage: (f) => setIncompatibleBits(f, bit(0)) },

  // 039: dirty images whose refcounts a killed writer left wrong.
  {
    iotest: '039',
    name: 'dirty-with-leak',
    bases: V3,
    damage: (f) => {
      setIncompatibleBits(f, bit(0));
      dataRefcount(f, 2);
    },
  },
  {
    iotest: '039',
    name: 'dirty-with-refcount-too-low',
    bases: ['v3', 'v3-lazy-dirty'],
    damage: (f) => {
      setIncompatibleBits(f, bit(0));
      dataRefcount(f, 0);
    },
  },
  { iotest: '039', name: 'killed-lazy-writer', bases: ['v3-lazy-dirty'], damage: () => {} },
  { iotest: '039', name: 'killed-lazy-writer-dirty-cleared', bases: ['v3-lazy-dirty'], damage: (f) => writeU64(f, 72, readU64(f, 72) & ~bit(0)) },

  // 061: botched upgrades and downgrades.
  { iotest: '061', name: 'v2-botched-to-v3', bases: ['v2-snap'], damage: botchV2ToV3 },
  { iotest: '061', name: 'v3-poked-to-v2', bases: V3, damage: (f) => writeU32(f, 4, 2) },
  { iotest: '061', name: 'v2-poked-to-v3', bases: ['v2-snap'], damage: (f) => writeU32(f, 4, 3) },
  { iotest: '061', name: 'snapshot-extra-data-size-0', bases: ['v3-snap'], damage: (f) => writeU32(f, snapshotEntry(f, 0) + 36, 0) },

  // 066: zero clusters.
  { iotest: '066', name: 'zero-flag-on-v2', bases: ['v2-snap'], damage: (f) => setL2Entry(f, 0, readU64(f, activeL2(f)) | 1n) },
  {
    iotest: '066',
    name: 'preallocated-zero-cluster-refcount-zero',
    bases: ['v3'],
    damage: (f) => {
      const entry = readU64(f, activeL2(f) + 32 * 8);
      setRefcount(f, clusterOf(f, Number(entry & 0x00ff_ffff_ffff_fe00n)), 0);
    },
  },

  // 112: refcount widths.
  { iotest: '112', name: 'refcount-order-7', bases: V3, damage: (f) => writeU32(f, 96, 7) },
  { iotest: '112', name: 'refcount-order-0-over-16-bit', bases: V3, damage: (f) => writeU32(f, 96, 0) },
  { iotest: '112', name: 'refcount-2-bits-full', bases: ['v3-rc2-full'], damage: () => {} },
  { iotest: '112', name: 'refcount-64-bits-huge', bases: ['v3-rc64-snap'], damage: (f) => dataRefcount(f, 2 ** 53) },

  // 138 and 217: compressed clusters cut short; 1-bit refcounts with a cluster referenced twice.
  {
    iotest: '138',
    name: 'compressed-cluster-cut-short',
    bases: ['v3-compressed'],
    damage: (f) => {
      const last = compressedEntries(f).reduce((a, b) => (b.hostOffset > a.hostOffset ? b : a));
      fs.truncateSync(f, last.hostOffset + 16);
    },
  },
  { iotest: '217', name: 'one-bit-refcount-shared-cluster', bases: ['v3-rc1'], damage: (f) => setL2Entry(f, 20, readU64(f, activeL2(f))) },
  { iotest: '217', name: 'one-bit-refcount-shared-l2', bases: ['v3-rc1'], damage: (f) => writeU64(f, layout(f).l1Offset + 8, readU64(f, layout(f).l1Offset)) },

  // 244: external data file bits without the data file.
  { iotest: '244', name: 'data-file-bit-without-extension', bases: V3, damage: (f) => setIncompatibleBits(f, bit(2)) },
  { iotest: '244', name: 'data-file-raw-bit-alone', bases: V3, damage: (f) => writeU64(f, 88, readU64(f, 88) | bit(1)) },

  // 261: the snapshot table.
  { iotest: '261', name: 'snapshot-extra-data-huge', bases: SNAPSHOTS, damage: (f) => writeU32(f, snapshotEntry(f, 0) + 36, 0xffffffff) },
  { iotest: '261', name: 'snapshot-extra-data-1025', bases: SNAPSHOTS, damage: (f) => writeU32(f, snapshotEntry(f, 0) + 36, 1025) },
  {
    iotest: '261',
    name: 'snapshot-duplicate-id',
    bases: SNAPSHOTS,
    damage: (f) => {
      const first = snapshotEntry(f, 0);
      const second = snapshotEntry(f, 1);
      const idAt = (entry: number): number => entry + 40 + Number(readU64(f, entry + 32) & 0xffff_ffffn);
      writeBytes(f, idAt(second), fs.readFileSync(f).subarray(idAt(first), idAt(first) + 1));
    },
  },
  { iotest: '261', name: 'snapshot-name-size-huge', bases: SNAPSHOTS, damage: (f) => writeU16(f, snapshotEntry(f, 1) + 14, 0xffff) },
  { iotest: '261', name: 'snapshot-table-past-eof', bases: SNAPSHOTS, damage: (f) => writeU64(f, 64, BigInt(endCluster(f) + layout(f).clusterBytes)) },
  { iotest: '261', name: 'snapshot-table-at-last-cluster', bases: SNAPSHOTS, damage: (f) => writeU64(f, 64, BigInt(endCluster(f) - layout(f).clusterBytes)) },
  { iotest: '261', name: 'snapshot-l1-past-eof', bases: SNAPSHOTS, damage: (f) => writeU64(f, snapshotEntry(f, 0), BigInt(endCluster(f) + 16 * layout(f).clusterBytes)) },
  { iotest: '261', name: 'snapshot-count-one-more', bases: SNAPSHOTS, damage: (f) => writeU32(f, 60, 3) },

  // 271: extended L2 entries (subcluster bitmaps).
  { iotest: '271', name: 'subcluster-allocated-and-zero', bases: ['v3-extl2'], damage: (f) => writeU64(f, activeL2(f) + 8, readU64(f, activeL2(f) + 8) | bit(32) | bit(0)) },
  { iotest: '271', name: 'subcluster-allocated-in-unallocated-cluster', bases: ['v3-extl2'], damage: (f) => writeU64(f, activeL2(f) + 5 * 16 + 8, 1n) },
  { iotest: '271', name: 'extended-l2-bit-cleared', bases: ['v3-extl2'], damage: (f) => writeU64(f, 72, readU64(f, 72) & ~bit(4)) },
  { iotest: '271', name: 'extended-l2-bit-set', bases: V3, damage: (f) => setIncompatibleBits(f, bit(4)) },

  // 274: backing files.
  { iotest: '274', name: 'shorter-backing', bases: ['v3-backing'], damage: () => {} },
  { iotest: '274', name: 'backing-missing', bases: ['v3-backing'], damage: (f) => writeBytes(f, Number(readU64(f, 8)), new TextEncoder().encode('X')) },

  // 287: compression types.
  { iotest: '287', name: 'compression-type-2', bases: ['v3-zstd'], damage: (f) => writeBytes(f, 104, Uint8Array.of(2)) },
  { iotest: '287', name: 'zstd-without-incompatible-bit', bases: ['v3-zstd'], damage: (f) => writeU64(f, 72, readU64(f, 72) & ~bit(3)) },
  { iotest: '287', name: 'zstd-type-on-zlib-image', bases: ['v3-compressed'], damage: (f) => writeBytes(f, 104, Uint8Array.of(1)) },

  // 029: snapshots whose L1 tables differ in size from the active one.
  { iotest: '029', name: 'grown-after-snapshot', bases: ['v3-grown'], damage: () => {} },
  { iotest: '029', name: 'snapshot-l1-size-larger-than-table', bases: ['v3-grown'], damage: (f) => writeU32(f, snapshotEntry(f, 0) + 8, 64) },
  { iotest: '029', name: 'active-l1-size-larger-than-table', bases: ['v3-grown'], damage: (f) => writeU32(f, 36, 4096) },
];

export const CASES: CorruptCase[] = DAMAGES.flatMap((entry) =>
  entry.bases.map((base) => ({ name: `${entry.iotest}-${entry.name}-${base}`, base, damage: entry.damage, slowQemuRepair: entry.slowQemuRepair })),
);

export { u64 };
