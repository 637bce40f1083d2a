/**
 * Changing a qcow2 file by hand, the way a bug or a crash would, to inject faults for check
 * tests. Reads only the few header fields it needs, independently of the engine under test.
 */
import * as fs from 'node:fs';

export interface Layout {
  version: number;
  clusterBytes: number;
  l1Offset: number;
  l1Size: number;
  refcountTableOffset: number;
  refcountOrder: number;
  fileSize: number;
}

export const COPIED = 1n << 63n;
export const OFFSET_MASK = 0x00ff_ffff_ffff_fe00n;

function withFile<T>(path: string, work: (fd: number) => T): T {
  const fd = fs.openSync(path, 'r+');
  try {
    return work(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export function readU64(path: string, position: number): bigint {
  return withFile(path, (fd) => {
    const bytes = Buffer.alloc(8);
    fs.readSync(fd, bytes, 0, 8, position);
    return bytes.readBigUInt64BE(0);
  });
}

export function writeU64(path: string, position: number, value: bigint): void {
  withFile(path, (fd) => {
    const bytes = Buffer.alloc(8);
    bytes.writeBigUInt64BE(value, 0);
    fs.writeSync(fd, bytes, 0, 8, position);
  });
}

/** Writes raw bytes at a file position (a poke_file of qemu-iotests). */
export function writeBytes(path: string, position: number, bytes: Uint8Array): void {
  withFile(path, (fd) => fs.writeSync(fd, bytes, 0, bytes.length, position));
}

export function readBytes(path: string, position: number, length: number): Uint8Array {
  return withFile(path, (fd) => {
    const bytes = Buffer.alloc(length);
    fs.readSync(fd, bytes, 0, length, position);
    return new Uint8Array(bytes);
  });
}

export function writeU32(path: string, position: number, value: number): void {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0, 0);
  writeBytes(path, position, bytes);
}

export function writeU16(path: string, position: number, value: number): void {
  const bytes = Buffer.alloc(2);
  bytes.writeUInt16BE(value & 0xffff, 0);
  writeBytes(path, position, bytes);
}

export function readU32(path: string, position: number): number {
  return Buffer.from(readBytes(path, position, 4)).readUInt32BE(0);
}

export function layout(path: string): Layout {
  const header = Buffer.alloc(104);
  withFile(path, (fd) => fs.readSync(fd, header, 0, 104, 0));
  const version = header.readUInt32BE(4);
  return {
    version,
    clusterBytes: 2 ** header.readUInt32BE(20),
    l1Size: header.readUInt32BE(36),
    l1Offset: Number(header.readBigUInt64BE(40)),
    refcountTableOffset: Number(header.readBigUInt64BE(48)),
    refcountOrder: version === 3 ? header.readUInt32BE(96) : 4,
    fileSize: fs.statSync(path).size,
  };
}

/** Where cluster's refcount lives: the byte position and, for sub-byte widths, the bit shift. */
function refcountSlot(path: string, cluster: number): { position: number; bits: number; shift: number } {
  const { clusterBytes, refcountTableOffset, refcountOrder } = layout(path);
  const bits = 2 ** refcountOrder;
  const perBlock = (clusterBytes * 8) / bits;
  const block = Number(readU64(path, refcountTableOffset + Math.floor(cluster / perBlock) * 8) & ~0x1ffn);
  if (block === 0) throw new Error(`no refcount block covers cluster ${cluster}`);
  const bitIndex = (cluster % perBlock) * bits;
  return { position: block + Math.floor(bitIndex / 8), bits, shift: bits < 8 ? bitIndex % 8 : 0 };
}

export function getRefcount(path: string, cluster: number): number {
  const { position, bits, shift } = refcountSlot(path, cluster);
  const bytes = Buffer.alloc(Math.max(1, bits / 8));
  withFile(path, (fd) => fs.readSync(fd, bytes, 0, bytes.length, position));
  if (bits < 8) return ((bytes[0] ?? 0) >> shift) & ((1 << bits) - 1);
  return Number(bytes.reduce((value, byte) => value * 256n + BigInt(byte), 0n));
}

export function setRefcount(path: string, cluster: number, value: number): void {
  const { position, bits, shift } = refcountSlot(path, cluster);
  withFile(path, (fd) => {
    const bytes = Buffer.alloc(Math.max(1, bits / 8));
    fs.readSync(fd, bytes, 0, bytes.length, position);
    if (bits < 8) {
      const mask = ((1 << bits) - 1) << shift;
      bytes[0] = ((bytes[0] ?? 0) & ~mask) | ((value << shift) & mask);
    } else {
      bytes.fill(0);
      const big = BigInt(value);
      for (let index = 0; index < bytes.length; index++) bytes[bytes.length - 1 - index] = Number((big >> BigInt(8 * index)) & 0xffn);
    }
    fs.writeSync(fd, bytes, 0, bytes.length, position);
  });
}

/** The file position of the (first word of the) L2 entry that maps guestOffset; the L2 table must exist. */
export function l2EntryPosition(path: string, guestOffset: number, extendedL2 = false): number {
  const { clusterBytes, l1Offset } = layout(path);
  const entryBytes = extendedL2 ? 16 : 8;
  const perTable = clusterBytes / entryBytes;
  const guestCluster = Math.floor(guestOffset / clusterBytes);
  const l2 = Number(readU64(path, l1Offset + Math.floor(guestCluster / perTable) * 8) & OFFSET_MASK);
  if (l2 === 0) throw new Error(`no L2 table maps guest offset ${guestOffset}`);
  return l2 + (guestCluster % perTable) * entryBytes;
}

/** The host cluster index holding guest cluster guestOffset (a normal cluster). */
export function hostClusterOf(path: string, guestOffset: number): number {
  const entry = readU64(path, l2EntryPosition(path, guestOffset));
  return Number(entry & OFFSET_MASK) / layout(path).clusterBytes;
}

export function setIncompatibleBits(path: string, bits: bigint): void {
  writeU64(path, 72, readU64(path, 72) | bits);
}

/** Appends one zeroed cluster to the file; returns its index. */
export function appendCluster(path: string): number {
  const { clusterBytes, fileSize } = layout(path);
  const index = Math.ceil(fileSize / clusterBytes);
  withFile(path, (fd) => fs.ftruncateSync(fd, (index + 1) * clusterBytes));
  return index;
}

export interface SnapshotTableEntry {
  /** Where the entry starts in the file. */
  position: number;
  l1Offset: number;
  l1Size: number;
  id: string;
  name: string;
  extraBytes: number;
}

/** The snapshot table's entries, read from the header's count and offset. */
export function snapshotTable(path: string): SnapshotTableEntry[] {
  const file = fs.readFileSync(path);
  const count = file.readUInt32BE(60);
  let position = Number(file.readBigUInt64BE(64));
  const entries: SnapshotTableEntry[] = [];
  for (let index = 0; index < count; index++) {
    const idBytes = file.readUInt16BE(position + 12);
    const nameBytes = file.readUInt16BE(position + 14);
    const extraBytes = file.readUInt32BE(position + 36);
    const idStart = position + 40 + extraBytes;
    entries.push({
      position,
      l1Offset: Number(file.readBigUInt64BE(position)),
      l1Size: file.readUInt32BE(position + 8),
      id: file.subarray(idStart, idStart + idBytes).toString('utf8'),
      name: file.subarray(idStart + idBytes, idStart + idBytes + nameBytes).toString('utf8'),
      extraBytes,
    });
    position = Math.ceil((idStart + idBytes + nameBytes) / 8) * 8;
  }
  return entries;
}

/**
 * Rewrites the snapshot table in place with each entry's extra data cut to `extraBytes[i]` (as a
 * program that knew only version 2 would have written it; qemu-iotests 261's recipe).
 */
export function cutSnapshotExtraData(path: string, extraBytes: number[]): void {
  const file = fs.readFileSync(path);
  const entries = snapshotTable(path);
  const first = entries[0];
  if (first === undefined) return;
  const parts: Buffer[] = [];
  let end = first.position;
  entries.forEach((entry, index) => {
    const keep = Math.min(entry.extraBytes, extraBytes[index] ?? entry.extraBytes);
    const fixed = Buffer.from(file.subarray(entry.position, entry.position + 40));
    fixed.writeUInt32BE(keep, 36);
    const idAndName = Buffer.concat([Buffer.from(entry.id, 'utf8'), Buffer.from(entry.name, 'utf8')]);
    const part = Buffer.concat([fixed, file.subarray(entry.position + 40, entry.position + 40 + keep), idAndName]);
    parts.push(Buffer.concat([part, Buffer.alloc((8 - (part.length % 8)) % 8)]));
    end = Math.ceil((entry.position + 40 + entry.extraBytes + idAndName.length) / 8) * 8;
  });
  const table = Buffer.concat(parts);
  withFile(path, (fd) => {
    fs.writeSync(fd, Buffer.concat([table, Buffer.alloc(end - first.position - table.length)]), 0, end - first.position, first.position);
  });
}

/**
 * Makes a version 2 image claim version 3 without converting anything (qemu-iotests 261's
 * "botched v3"): version, refcount order 4 and a 104-byte header, with each snapshot's extra data
 * cut to `extraBytes[i]` first (qemu-img 7.2 writes 24 bytes even for v2).
 */
export function botchToVersion3(path: string, extraBytes: number[]): void {
  cutSnapshotExtraData(path, extraBytes);
  writeU32(path, 4, 3);
  writeU32(path, 96, 4);
  writeU32(path, 100, 104);
}

/** L2 tables only snapshots use (the active L1 table does not name them), by host offset. */
export function inactiveL2Tables(path: string): number[] {
  const { l1Offset, l1Size, clusterBytes } = layout(path);
  const active = new Set<number>();
  for (let entry = 0; entry < l1Size; entry++) active.add(Number(readU64(path, l1Offset + entry * 8) & OFFSET_MASK));
  const inactive = new Set<number>();
  for (const snapshot of snapshotTable(path)) {
    for (let entry = 0; entry < snapshot.l1Size; entry++) {
      const l2 = Number(readU64(path, snapshot.l1Offset + entry * 8) & OFFSET_MASK);
      if (l2 !== 0 && !active.has(l2) && l2 % clusterBytes === 0) inactive.add(l2);
    }
  }
  return [...inactive].sort((a, b) => a - b);
}
