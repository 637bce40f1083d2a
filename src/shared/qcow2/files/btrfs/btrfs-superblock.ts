/**
 * The btrfs superblock (the primary copy, 64 KiB into the device) as the reader needs it: where
 * the trees' roots are (logical addresses), the chunks that map the system area (enough to read
 * the chunk tree), block sizes, and the features that change what the reader meets. Checked by its
 * checksum (CRC-32C; other checksum kinds are read unchecked) and against itself.
 * Facts from the btrfs on-disk format documentation (btrfs.readthedocs.io, "On-disk format").
 */
import { crc32c } from '../crc32c.ts';
import type { VolumeBytes } from '../filesystem.ts';
import { bigUint64, corrupt, KEY_BYTES, readKey, uint16, uint32, uint64, unsupported } from './btrfs-bytes.ts';
import { parseChunk, type Chunk } from './btrfs-chunks.ts';

export const SUPERBLOCK_OFFSET = 0x10000;
const SUPERBLOCK_BYTES = 0x1000;
const MAGIC = '_BHRfS_M';
const SYSTEM_CHUNK_ARRAY = 0x32b;
const SYSTEM_CHUNK_ARRAY_MAX = 2048;
const CHUNK_ITEM = 228;

/** Incompatible features whose meaning for reading is known and handled (any other is refused). */
const INCOMPAT_METADATA_UUID = 1 << 10;
const READABLE_INCOMPAT =
  (1 << 0) | // mixed back references
  (1 << 1) | // a default subvolume
  (1 << 2) | // mixed data and metadata block groups
  (1 << 3) | // LZO compression
  (1 << 4) | // zstd compression
  (1 << 5) | // metadata blocks larger than a page
  (1 << 6) | // extended inode references
  (1 << 7) | // RAID5/6 chunks (refused chunk by chunk where met)
  (1 << 8) | // skinny metadata extent items
  (1 << 9) | // no explicit hole items
  INCOMPAT_METADATA_UUID |
  (1 << 11) | // RAID1 with 3 and 4 copies
  (1 << 16); // simple quotas

export interface BtrfsSuperblock {
  fsid: Uint8Array;
  /** What tree blocks carry as their filesystem id: the fsid, or the metadata UUID where it was changed. */
  metadataFsid: Uint8Array;
  generation: bigint;
  rootTree: number;
  rootLevel: number;
  chunkTree: number;
  chunkLevel: number;
  /** A log tree (files fsync'd since the last commit): what a mount replays. 0 when none. */
  logTree: number;
  logLevel: number;
  sectorBytes: number;
  nodeBytes: number;
  /** Whether tree blocks' checksums are CRC-32C (checked); other kinds (xxhash, SHA-256, BLAKE2b) are not checked. */
  crc32cChecksums: boolean;
  /** This device's id in the filesystem (a chunk's stripe on it is read). */
  deviceId: bigint;
  deviceCount: number;
  label: string;
  systemChunks: Chunk[];
}

export async function hasBtrfsMagic(volume: VolumeBytes): Promise<boolean> {
  if (volume.length < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) return false;
  const magic = new Uint8Array(8);
  await volume.read(magic, SUPERBLOCK_OFFSET + 0x40);
  return Buffer.from(magic).toString('latin1') === MAGIC;
}

export async function readBtrfsSuperblock(volume: VolumeBytes): Promise<BtrfsSuperblock> {
  if (volume.length < SUPERBLOCK_OFFSET + SUPERBLOCK_BYTES) throw corrupt(`the volume (${volume.length} bytes) is too small for btrfs`);
  const bytes = new Uint8Array(SUPERBLOCK_BYTES);
  await volume.read(bytes, SUPERBLOCK_OFFSET);
  if (Buffer.from(bytes.subarray(0x40, 0x48)).toString('latin1') !== MAGIC) throw corrupt('its superblock has no btrfs signature');
  const checksumType = uint16(bytes, 0xc4);
  if (checksumType > 3) throw unsupported(`checksum kind ${checksumType}`);
  if (checksumType === 0 && uint32(bytes, 0) !== (~crc32c(bytes.subarray(0x20)) >>> 0)) throw corrupt('its superblock fails its checksum');
  const incompatible = bigUint64(bytes, 0xbc);
  const unknown = incompatible & ~BigInt(READABLE_INCOMPAT);
  if (unknown !== 0n) throw unsupported(`incompatible features 0x${unknown.toString(16)} (a newer layout: extent tree v2, zoned devices, a RAID stripe tree or later)`);
  const sectorBytes = uint32(bytes, 0x90);
  const nodeBytes = uint32(bytes, 0x94);
  if (sectorBytes < 512 || sectorBytes > 65536 || (sectorBytes & (sectorBytes - 1)) !== 0) throw corrupt(`sectors of ${sectorBytes} bytes`);
  if (nodeBytes < sectorBytes || nodeBytes > 65536 || (nodeBytes & (nodeBytes - 1)) !== 0) throw corrupt(`tree blocks of ${nodeBytes} bytes`);
  const arrayBytes = uint32(bytes, 0xa0);
  if (arrayBytes > SYSTEM_CHUNK_ARRAY_MAX) throw corrupt(`a system chunk array of ${arrayBytes} bytes`);
  const systemChunks: Chunk[] = [];
  let at = SYSTEM_CHUNK_ARRAY;
  const end = SYSTEM_CHUNK_ARRAY + arrayBytes;
  while (at < end) {
    if (at + KEY_BYTES > end) throw corrupt('the system chunk array ends inside a key');
    const key = readKey(bytes, at);
    if (key.type !== CHUNK_ITEM) throw corrupt(`the system chunk array holds an item of type ${key.type}`);
    const chunk = parseChunk(bytes.subarray(at + KEY_BYTES, end), key.offset);
    systemChunks.push(chunk);
    at += KEY_BYTES + chunk.itemBytes;
  }
  const metadataUuid = (incompatible & BigInt(INCOMPAT_METADATA_UUID)) !== 0n;
  const levels = [bytes[0xc6] as number, bytes[0xc7] as number, bytes[0xc8] as number];
  if (levels.some((level) => level > 7)) throw corrupt(`a tree of ${Math.max(...levels) + 1} levels`);
  return {
    fsid: bytes.slice(0x20, 0x30),
    metadataFsid: metadataUuid ? bytes.slice(0x23b, 0x24b) : bytes.slice(0x20, 0x30),
    generation: bigUint64(bytes, 0x48),
    rootTree: uint64(bytes, 0x50, 'the root tree address'),
    rootLevel: levels[0] as number,
    chunkTree: uint64(bytes, 0x58, 'the chunk tree address'),
    chunkLevel: levels[1] as number,
    logTree: uint64(bytes, 0x60, 'the log tree address'),
    logLevel: levels[2] as number,
    sectorBytes,
    nodeBytes,
    crc32cChecksums: checksumType === 0,
    deviceId: bigUint64(bytes, 0xc9),
    deviceCount: uint64(bytes, 0x88, 'the device count'),
    label: labelOf(bytes.subarray(0x12b, 0x22b)),
    systemChunks,
  };
}

function labelOf(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}
