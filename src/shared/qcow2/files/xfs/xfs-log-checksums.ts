/**
 * What XFS does to a metadata buffer as it writes it back after recovery: stamps it with the
 * sequence number of the transaction that last changed it and computes its CRC-32C again (the log
 * holds its bytes, not a valid checksum). The same fields tell recovery, before it replays a
 * buffer, whether the buffer on disk is already newer than the transaction (version 5 only).
 *
 * Which structures carry a sequence number, and where (from the on-disk format): the short- and
 * long-form tree blocks of version 5, remote symlink blocks, folder data, block and free-index
 * blocks, folder leaf and tree-node blocks and attribute leaves, and the superblock. A buffer whose
 * UUID is not the filesystem's is not trusted to say (recovery replays it).
 */
import { crc32c } from '../crc32c.ts';
import { uint16, uint32 } from './xfs-bytes.ts';
import type { Lsn } from './xfs-log-records.ts';

interface Stamped {
  lsnAt: number;
  uuidAt: number;
  crcAt: number;
}

const SHORT_TREE: Stamped = { lsnAt: 24, uuidAt: 32, crcAt: 52 };
const LONG_TREE: Stamped = { lsnAt: 32, uuidAt: 40, crcAt: 64 };
const FOLDER_BLOCK: Stamped = { lsnAt: 16, uuidAt: 24, crcAt: 4 };
const TREE_NODE: Stamped = { lsnAt: 24, uuidAt: 32, crcAt: 12 };

/** By the 32-bit signature at the block's start. */
const BY_MAGIC = new Map<number, Stamped>([
  [0x41423342, SHORT_TREE], // AB3B: free space by block
  [0x41423343, SHORT_TREE], // AB3C: free space by size
  [0x49414233, SHORT_TREE], // IAB3: inodes
  [0x46494233, SHORT_TREE], // FIB3: free inodes
  [0x524d4233, SHORT_TREE], // RMB3: reverse mapping
  [0x52334643, SHORT_TREE], // R3FC: reference counts
  [0x424d4133, LONG_TREE], // BMA3: a file's extents
  [0x58534c4d, { lsnAt: 48, uuidAt: 16, crcAt: 12 }], // XSLM: a symlink's target
  [0x58444233, FOLDER_BLOCK], // XDB3: folder in one block
  [0x58444433, FOLDER_BLOCK], // XDD3: folder data
  [0x58444633, FOLDER_BLOCK], // XDF3: folder free index
]);

/** By the 16-bit signature at byte 8 (the tree-node header's). */
const BY_NODE_MAGIC = new Map<number, Stamped>([
  [0x3df1, TREE_NODE], // folder leaf (one)
  [0x3dff, TREE_NODE], // folder leaf (of a tree)
  [0x3ebe, TREE_NODE], // folder or attribute tree node
  [0x3bee, TREE_NODE], // attribute leaf
]);

const SUPERBLOCK_MAGIC = 0x58465342;
const INODE_MAGIC = 0x494e;

function stampedKind(buffer: Uint8Array, superblockMetaUuidAt: number): Stamped | null {
  if (buffer.length < 64) return null;
  const magic = uint32(buffer, 0);
  if (magic === SUPERBLOCK_MAGIC) return { lsnAt: 240, uuidAt: superblockMetaUuidAt, crcAt: 224 };
  return BY_MAGIC.get(magic) ?? BY_NODE_MAGIC.get(uint16(buffer, 8)) ?? null;
}

/** Where the superblock keeps the UUID its metadata carries. */
export function superblockUuidAt(hasMetaUuid: boolean): number {
  return hasMetaUuid ? 248 : 32;
}

/** The sequence number a buffer carries, when it carries one and is this filesystem's (`metaUuid`); null otherwise. */
export function bufferLsn(buffer: Uint8Array, metaUuid: Uint8Array, superblockMetaUuidAt: number): bigint | null {
  const kind = stampedKind(buffer, superblockMetaUuidAt);
  if (kind === null || kind.uuidAt + 16 > buffer.length) return null;
  for (let index = 0; index < 16; index++) if (buffer[kind.uuidAt + index] !== metaUuid[index]) return null;
  return new DataView(buffer.buffer, buffer.byteOffset, buffer.length).getBigUint64(kind.lsnAt);
}

export function lsnValue(lsn: Lsn): bigint {
  return (BigInt(lsn.cycle) << 32n) | BigInt(lsn.block);
}

/** Stamps `lsn` into a buffer that carries one (as the write after recovery does). */
export function stampLsn(buffer: Uint8Array, lsn: Lsn, superblockMetaUuidAt: number): void {
  const kind = stampedKind(buffer, superblockMetaUuidAt);
  if (kind !== null) new DataView(buffer.buffer, buffer.byteOffset, buffer.length).setBigUint64(kind.lsnAt, lsnValue(lsn));
}

/** Computes again the CRC-32C of a replayed buffer: a structure with one, or each version 3 inode of an inode buffer. */
export function refreshChecksums(buffer: Uint8Array, inodeBytes: number, superblockMetaUuidAt: number): void {
  const kind = stampedKind(buffer, superblockMetaUuidAt);
  if (kind !== null) {
    storeChecksum(buffer, kind.crcAt);
    return;
  }
  if (buffer.length % inodeBytes !== 0 || uint16(buffer, 0) !== INODE_MAGIC) return;
  for (let at = 0; at < buffer.length; at += inodeBytes) {
    if (uint16(buffer, at) === INODE_MAGIC && buffer[at + 4] === 3) storeChecksum(buffer.subarray(at, at + inodeBytes), 100);
  }
}

const ZERO = new Uint8Array(4);

/** Writes the CRC-32C of `bytes` (its 4-byte field at `at` taken as zeros) there, inverted and little-endian, as XFS stores it. */
export function storeChecksum(bytes: Uint8Array, at: number): void {
  const crc = ~crc32c(bytes.subarray(at + 4), crc32c(ZERO, crc32c(bytes.subarray(0, at)))) >>> 0;
  bytes[at] = crc & 0xff;
  bytes[at + 1] = (crc >>> 8) & 0xff;
  bytes[at + 2] = (crc >>> 16) & 0xff;
  bytes[at + 3] = crc >>> 24;
}
