/**
 * L1, L2 and refcount-table entries (qcow2.txt "Cluster mapping" and "Host cluster management").
 * 64-bit entries are handled as two u32 halves so that every offset stays an exact JS number.
 */
import { Qcow2Error } from '../errors.ts';
import { hex } from './bytes.ts';

const TWO_32 = 0x1_0000_0000;
export const OFLAG_COPIED_HI = 0x8000_0000;
export const OFLAG_COMPRESSED_HI = 0x4000_0000;
const OFFSET_MASK_HI = 0x00ff_ffff;
const OFFSET_MASK_LO = 0xffff_fe00;
const L1_RESERVED_HI = 0x7f00_0000;
const L1_RESERVED_LO = 0x0000_01ff;
const L2_RESERVED_HI = 0x3f00_0000;
const L2_RESERVED_LO = 0x0000_01fe;

export interface L1Entry {
  l2Offset: number;
  copied: boolean;
}

export function decodeL1(data: DataView, position: number): L1Entry {
  const high = data.getUint32(position);
  const low = data.getUint32(position + 4);
  return { l2Offset: (high & OFFSET_MASK_HI) * TWO_32 + ((low & OFFSET_MASK_LO) >>> 0), copied: (high & OFLAG_COPIED_HI) !== 0 };
}

export function l1HasReservedBits(data: DataView, position: number): boolean {
  return (data.getUint32(position) & L1_RESERVED_HI) !== 0 || (data.getUint32(position + 4) & L1_RESERVED_LO) !== 0;
}

export function encodeL1(data: DataView, position: number, l2Offset: number, copied: boolean): void {
  const high = Math.floor(l2Offset / TWO_32);
  data.setUint32(position, (high | (copied ? OFLAG_COPIED_HI : 0)) >>> 0);
  data.setUint32(position + 4, l2Offset >>> 0);
}

export type ClusterKind = 'unallocated' | 'zero' | 'normal' | 'compressed';

export interface L2Entry {
  kind: ClusterKind;
  /** For normal (and zero with a preallocated cluster): the cluster's host offset; for compressed: the byte offset of the data. */
  hostOffset: number;
  copied: boolean;
  /** Compressed only: bytes of compressed data starting at hostOffset (sector-rounded, as QEMU stores it). */
  compressedSize: number;
  /** Extended L2 only: subcluster allocation bits (bit i = subcluster i has data at hostOffset + i * subclusterSize). */
  allocMask: number;
  /** Extended L2 only: subcluster zero bits. */
  zeroMask: number;
  reservedBitsSet: boolean;
}

export interface L2Format {
  clusterBits: number;
  extendedL2: boolean;
  /**
   * Guest data lives in an external data file (incompatible bit 2): there host offset 0 is a real
   * cluster, told from "unallocated" by the COPIED flag, which every allocated entry carries.
   */
  externalData?: boolean;
}

export function l2EntryBytes(format: L2Format): number {
  return format.extendedL2 ? 16 : 8;
}

export function decodeL2(data: DataView, position: number, format: L2Format): L2Entry {
  const high = data.getUint32(position);
  const low = data.getUint32(position + 4);
  const copied = (high & OFLAG_COPIED_HI) !== 0;
  let allocMask = 0;
  let zeroMask = 0;
  if (format.extendedL2) {
    zeroMask = data.getUint32(position + 8);
    allocMask = data.getUint32(position + 12);
  }
  if ((high & OFLAG_COMPRESSED_HI) !== 0) {
    const offsetBits = 62 - (format.clusterBits - 8);
    const highOffsetBits = offsetBits - 32;
    const hostOffset = (high & ((1 << highOffsetBits) - 1)) * TWO_32 + low;
    const extraSectors = (high & 0x3fff_ffff) >>> highOffsetBits;
    const compressedSize = sectorRoundedSize(hostOffset, extraSectors);
    return { kind: 'compressed', hostOffset, copied, compressedSize, allocMask: 0, zeroMask: 0, reservedBitsSet: copied };
  }
  const hostOffset = (high & OFFSET_MASK_HI) * TWO_32 + ((low & OFFSET_MASK_LO) >>> 0);
  const zeroFlag = (low & 1) !== 0 && !format.extendedL2;
  const reservedBitsSet = (high & L2_RESERVED_HI) !== 0 || (low & L2_RESERVED_LO) !== 0;
  const allocated = hostOffset !== 0 || (copied && format.externalData === true);
  let kind: ClusterKind;
  if (format.extendedL2) kind = allocated ? 'normal' : 'unallocated';
  else if (zeroFlag) kind = 'zero';
  else kind = allocated ? 'normal' : 'unallocated';
  return { kind, hostOffset, copied, compressedSize: 0, allocMask, zeroMask, reservedBitsSet };
}

/**
 * The host offset of a standard L2 entry (0 when none), or -1 for a compressed one, without
 * building an L2Entry: for loops over every entry of many tables (refcount walks, usage).
 */
export function standardL2HostOffset(data: DataView, position: number): number {
  const high = data.getUint32(position);
  if ((high & OFLAG_COMPRESSED_HI) !== 0) return -1;
  return (high & OFFSET_MASK_HI) * TWO_32 + ((data.getUint32(position + 4) & OFFSET_MASK_LO) >>> 0);
}

/**
 * The host offset of an L2 entry with nothing unusual in it (standard, no zero flag, no reserved
 * bits, not extended L2), 0 when unallocated; -1 for any other entry, which needs decodeL2. For loops
 * over every entry that must still see every unusual one.
 */
export function plainL2HostOffset(data: DataView, position: number, format: L2Format): number {
  if (format.extendedL2) return -1;
  const high = data.getUint32(position);
  const low = data.getUint32(position + 4);
  if ((high & (OFLAG_COMPRESSED_HI | L2_RESERVED_HI)) !== 0 || (low & (L2_RESERVED_LO | 1)) !== 0) return -1;
  return (high & OFFSET_MASK_HI) * TWO_32 + ((low & OFFSET_MASK_LO) >>> 0);
}

/** Writes a standard (non-compressed) L2 entry. With extended L2 the masks are written too. */
export function encodeL2(data: DataView, position: number, format: L2Format, entry: { hostOffset: number; copied: boolean; zero: boolean; allocMask?: number; zeroMask?: number }): void {
  const high = Math.floor(entry.hostOffset / TWO_32);
  data.setUint32(position, (high | (entry.copied ? OFLAG_COPIED_HI : 0)) >>> 0);
  data.setUint32(position + 4, ((entry.hostOffset >>> 0) | (entry.zero && !format.extendedL2 ? 1 : 0)) >>> 0);
  if (format.extendedL2) {
    data.setUint32(position + 8, (entry.zeroMask ?? 0) >>> 0);
    data.setUint32(position + 12, (entry.allocMask ?? 0) >>> 0);
  }
}

/** The bytes a compressed entry names: from its offset to the end of its last sector. */
function sectorRoundedSize(hostOffset: number, extraSectors: number): number {
  return (extraSectors + 1) * 512 - (hostOffset % 512);
}

/** The stored size an entry written by encodeCompressedL2 reads back as (L2Entry.compressedSize). */
export function compressedEntrySize(hostOffset: number, compressedBytes: number): number {
  return sectorRoundedSize(hostOffset, compressedExtraSectors(hostOffset, compressedBytes));
}

function compressedExtraSectors(hostOffset: number, compressedBytes: number): number {
  return Math.floor((hostOffset + compressedBytes - 1) / 512) - Math.floor(hostOffset / 512);
}

/** Writes a compressed-cluster descriptor: hostOffset is a byte offset, compressedBytes the data length. */
export function encodeCompressedL2(data: DataView, position: number, format: L2Format, hostOffset: number, compressedBytes: number): void {
  const offsetBits = 62 - (format.clusterBits - 8);
  const highOffsetBits = offsetBits - 32;
  const extraSectors = compressedExtraSectors(hostOffset, compressedBytes);
  const high = (Math.floor(hostOffset / TWO_32) | (extraSectors << highOffsetBits) | OFLAG_COMPRESSED_HI) >>> 0;
  data.setUint32(position, high);
  data.setUint32(position + 4, hostOffset >>> 0);
  if (format.extendedL2) {
    data.setUint32(position + 8, 0);
    data.setUint32(position + 12, 0);
  }
}

export function decodeRefcountTableEntry(data: DataView, position: number): { blockOffset: number; reservedBitsSet: boolean } {
  return { blockOffset: refcountBlockOffset(data, position), reservedBitsSet: refcountTableEntryReserved(data, position) };
}

/** A refcount table entry's block offset, read in place (scans look one up per cluster). */
export function refcountBlockOffset(data: DataView, position: number): number {
  return data.getUint32(position) * TWO_32 + ((data.getUint32(position + 4) & OFFSET_MASK_LO) >>> 0);
}

/** Whether a refcount table entry has reserved bits set, read in place. */
export function refcountTableEntryReserved(data: DataView, position: number): boolean {
  return (data.getUint32(position + 4) & 0x1ff) !== 0;
}

export function encodeRefcountTableEntry(data: DataView, position: number, blockOffset: number): void {
  data.setUint32(position, Math.floor(blockOffset / TWO_32));
  data.setUint32(position + 4, blockOffset >>> 0);
}

/**
 * Whether a refcount entry is 0 (the cluster is free), read without converting it: a 64-bit value
 * too large for a number is in use all the same (a damaged leak), not an error for an allocator.
 */
export function refcountIsZero(block: Uint8Array, data: DataView, index: number, order: number): boolean {
  if (order === 6) return data.getUint32(index * 8) === 0 && data.getUint32(index * 8 + 4) === 0;
  return getRefcount(block, data, index, order) === 0;
}

/** Reads refcount `index` from a refcount block of `2^order`-bit entries (sub-byte widths are LSB first). */
export function getRefcount(block: Uint8Array, data: DataView, index: number, order: number): number {
  switch (order) {
    case 0:
      return ((block[index >>> 3] ?? 0) >>> (index & 7)) & 1;
    case 1:
      return ((block[index >>> 2] ?? 0) >>> (2 * (index & 3))) & 3;
    case 2:
      return ((block[index >>> 1] ?? 0) >>> (4 * (index & 1))) & 15;
    case 3:
      return block[index] ?? 0;
    case 4:
      return data.getUint16(index * 2);
    case 5:
      return data.getUint32(index * 4);
    case 6: {
      const high = data.getUint32(index * 8);
      if (high > 0x1fffff) throw new Qcow2Error('CORRUPT', `Refcount ${hex(high)}… is out of range`);
      return high * TWO_32 + data.getUint32(index * 8 + 4);
    }
    default:
      throw new Qcow2Error('INTERNAL', `refcount order ${order}`);
  }
}

export function maxRefcount(order: number): number {
  return order >= 6 ? Number.MAX_SAFE_INTEGER : 2 ** (2 ** order) - 1;
}

export function setRefcount(block: Uint8Array, data: DataView, index: number, order: number, value: number): void {
  switch (order) {
    case 0:
    case 1:
    case 2: {
      const bits = 2 ** order;
      const perByte = 8 / bits;
      const byteIndex = Math.floor(index / perByte);
      const shift = (index % perByte) * bits;
      const mask = ((1 << bits) - 1) << shift;
      block[byteIndex] = ((block[byteIndex] ?? 0) & ~mask) | ((value << shift) & mask);
      return;
    }
    case 3:
      block[index] = value;
      return;
    case 4:
      data.setUint16(index * 2, value);
      return;
    case 5:
      data.setUint32(index * 4, value);
      return;
    case 6:
      data.setUint32(index * 8, Math.floor(value / TWO_32));
      data.setUint32(index * 8 + 4, value >>> 0);
      return;
    default:
      throw new Qcow2Error('INTERNAL', `refcount order ${order}`);
  }
}
