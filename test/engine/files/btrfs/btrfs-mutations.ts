/**
 * Where a btrfs volume's tree blocks lie (every block carrying the filesystem's id where a tree
 * block keeps it) and seeded-random damage to them — header fields, item tables, item data — with
 * the block's CRC-32C written again after, so the damage reaches the parsers behind the checksum
 * (without it, every case would end at the checksum).
 */
import { crc32c } from '../../../../src/shared/qcow2/files/crc32c.ts';
import type { SeededRandom } from '../../../helpers/seeded-random.ts';
import { fieldPatch } from '../field-damage.ts';
import type { Patch } from '../ntfs/ntfs-mutations.ts';

export const SUPERBLOCK_OFFSET = 0x10000;

export interface BtrfsStructures {
  nodeBytes: number;
  /** Device offsets of the tree blocks. */
  nodes: number[];
}

export function findBtrfsStructures(bytes: Uint8Array): BtrfsStructures {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fsid = bytes.subarray(SUPERBLOCK_OFFSET + 0x20, SUPERBLOCK_OFFSET + 0x30);
  const nodeBytes = view.getUint32(SUPERBLOCK_OFFSET + 0x94, true);
  const nodes: number[] = [];
  for (let offset = 0; offset + nodeBytes <= bytes.length; offset += 4096) {
    if (offset === SUPERBLOCK_OFFSET) continue;
    if (!bytes.subarray(offset + 0x20, offset + 0x30).every((byte, index) => byte === fsid[index])) continue;
    // A live tree block's checksum holds (a stale copy's may too: damage to it is harmless, and still a case).
    if (view.getUint32(offset, true) === (~crc32c(bytes.subarray(offset + 0x20, offset + nodeBytes)) >>> 0)) nodes.push(offset);
  }
  return { nodeBytes, nodes };
}

/** One damage: 1–3 little-endian field writes on the superblock or one tree block, and its checksum written again. */
export function randomBtrfsDamage(bytes: Uint8Array, structures: BtrfsStructures, random: SeededRandom): Patch[] {
  const superblock = random.int(0, 4) === 0;
  const start = superblock ? SUPERBLOCK_OFFSET : (structures.nodes[random.int(0, structures.nodes.length)] ?? SUPERBLOCK_OFFSET);
  const size = superblock ? 4096 : structures.nodeBytes;
  const pick = (): number => {
    if (superblock) return SUPERBLOCK_FIELDS[random.int(0, SUPERBLOCK_FIELDS.length)] ?? 0x50;
    const where = random.int(0, 3);
    if (where === 0) return 0x30 + random.int(0, 0x35); // header: address, flags, owner, item count, level
    if (where === 1) return 101 + random.int(0, 25 * 16); // the first items' keys, offsets and sizes (or key pointers)
    return random.int(0x65, size); // anywhere in the items' data
  };
  const patches = Array.from({ length: 1 + random.int(0, 3) }, () => fieldPatch(random, start, pick(), size, true));
  if (random.int(0, 10) === 0) return patches; // now and then the checksum is left to fail
  const block = bytes.slice(start, start + size);
  for (const patch of patches) block.set(patch.bytes, patch.offset - start);
  rewriteChecksum(block, 0, size);
  return [...patches, { offset: start, bytes: [...block.subarray(0, 4)] }];
}

/** Writes the CRC-32C of the block of `length` bytes at `start` (the superblock, a tree block) into its first 4 bytes, as btrfs does. */
export function rewriteChecksum(bytes: Uint8Array, start: number, length: number): void {
  const checksum = ~crc32c(bytes.subarray(start + 0x20, start + length)) >>> 0;
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(start, checksum, true);
}

/** root, chunk_root, log_root, total_bytes, sectorsize, nodesize, sys_chunk_array_size, incompat flags, levels, device id, the system chunk array's first chunk. */
const SUPERBLOCK_FIELDS = [0x50, 0x58, 0x60, 0x70, 0x88, 0x90, 0x94, 0xa0, 0xbc, 0xc6, 0xc7, 0xc9, 0x32b, 0x33c, 0x344, 0x354, 0x36f, 0x377, 0x37f];
