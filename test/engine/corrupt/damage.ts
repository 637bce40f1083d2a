/**
 * Finding the structures of a qemu-made image by hand, for the corpus's damage: snapshot table
 * entries, L2 entries, compressed clusters. Independent of the engine under test.
 */
import * as fs from 'node:fs';
import { COPIED, layout, OFFSET_MASK, readBytes, readU32, readU64, writeBytes, writeU32, writeU64 } from '../../helpers/qcow2-poke.ts';

export const u64 = (value: bigint): Uint8Array => {
  const bytes = Buffer.alloc(8);
  bytes.writeBigUInt64BE(BigInt.asUintN(64, value), 0);
  return new Uint8Array(bytes);
};

export function snapshotsOffset(file: string): number {
  return Number(readU64(file, 64));
}

export function snapshotCount(file: string): number {
  return readU32(file, 60);
}

/** File positions of each snapshot table entry (qcow2.txt "Snapshots"). */
export function snapshotEntries(file: string): number[] {
  const positions: number[] = [];
  let position = snapshotsOffset(file);
  for (let index = 0; index < snapshotCount(file); index++) {
    positions.push(position);
    const head = Buffer.from(readBytes(file, position, 40));
    const length = 40 + head.readUInt32BE(36) + head.readUInt16BE(12) + head.readUInt16BE(14);
    position += Math.ceil(length / 8) * 8;
  }
  return positions;
}

export function snapshotEntry(file: string, index: number): number {
  const position = snapshotEntries(file)[index];
  if (position === undefined) throw new Error(`no snapshot ${index} in ${file}`);
  return position;
}

export function headerLength(file: string): number {
  return layout(file).version === 3 ? readU32(file, 100) : 72;
}

/** The L2 table an L1 table's entry names (0 if none). */
export function l2Table(file: string, l1Offset: number, index: number): number {
  return Number(readU64(file, l1Offset + index * 8) & OFFSET_MASK);
}

export function activeL2(file: string, index = 0): number {
  return l2Table(file, layout(file).l1Offset, index);
}

export function snapshotL2(file: string, snapshot: number, index = 0): number {
  return l2Table(file, Number(readU64(file, snapshotEntry(file, snapshot))), index);
}

/** The host offset of the data cluster guest cluster 0 maps to in the active state. */
export function firstDataCluster(file: string): number {
  return Number(readU64(file, activeL2(file)) & OFFSET_MASK);
}

export function refcountBlock(file: string, index = 0): number {
  return Number(readU64(file, layout(file).refcountTableOffset + index * 8) & OFFSET_MASK);
}

export function setL2Entry(file: string, index: number, value: bigint, l2 = activeL2(file)): void {
  writeU64(file, l2 + index * 8, value);
}

/** Position and decoded fields of every compressed L2 entry in the active state. */
export function compressedEntries(file: string): { position: number; hostOffset: number; sectors: number }[] {
  const { clusterBytes, l1Offset, l1Size } = layout(file);
  const clusterBits = Math.log2(clusterBytes);
  const offsetBits = BigInt(62 - (clusterBits - 8));
  const found: { position: number; hostOffset: number; sectors: number }[] = [];
  for (let l1Index = 0; l1Index < l1Size; l1Index++) {
    const l2 = l2Table(file, l1Offset, l1Index);
    if (l2 === 0) continue;
    const table = Buffer.from(readBytes(file, l2, clusterBytes));
    for (let slot = 0; slot < clusterBytes / 8; slot++) {
      const entry = table.readBigUInt64BE(slot * 8);
      if ((entry & (1n << 62n)) === 0n) continue;
      const hostOffset = Number(entry & ((1n << offsetBits) - 1n));
      const sectors = Number((entry >> offsetBits) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
      found.push({ position: l2 + slot * 8, hostOffset, sectors });
    }
  }
  return found;
}

export function fileSize(file: string): number {
  return fs.statSync(file).size;
}

export function endCluster(file: string): number {
  const { clusterBytes } = layout(file);
  return Math.ceil(fileSize(file) / clusterBytes) * clusterBytes;
}

/**
 * 061's botched upgrade: a v2 image's header made v3 in place (feature bits zero, refcount order
 * 4, a 104-byte header) and its snapshot table rewritten without any extra data.
 */
export function botchV2ToV3(file: string): void {
  const entries = snapshotEntries(file);
  const parts: Buffer[] = [];
  for (const position of entries) {
    const head = Buffer.from(readBytes(file, position, 40));
    const extra = head.readUInt32BE(36);
    const names = readBytes(file, position + 40 + extra, head.readUInt16BE(12) + head.readUInt16BE(14));
    head.writeUInt32BE(0, 36);
    const length = Math.ceil((40 + names.length) / 8) * 8;
    const entry = Buffer.alloc(length);
    head.copy(entry, 0);
    entry.set(names, 40);
    parts.push(entry);
  }
  if (entries.length > 0) writeBytes(file, snapshotsOffset(file), Buffer.concat(parts));
  writeU32(file, 4, 3);
  writeBytes(file, 72, new Uint8Array(32 + 8));
  writeU32(file, 96, 4);
  writeU32(file, 100, 104);
}

export { COPIED, OFFSET_MASK };
