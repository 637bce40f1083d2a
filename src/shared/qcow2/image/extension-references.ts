/**
 * References held by header extensions (qcow2.txt "Header extensions"): the LUKS encryption
 * header (0x0537be77: offset, length) and, when the autoclear bitmaps bit says they are valid,
 * the bitmap directory (0x23852875), each bitmap table and each bitmap data cluster.
 */
import { alignUp, hexEntry, view } from '../format/bytes.ts';
import { EXT_BITMAPS, EXT_CRYPTO_HEADER, findExtension } from '../format/header.ts';
import { AUTOCLEAR_BITMAPS } from '../format/limits.ts';
import { LUKS_PHDR_BYTES, luksStatedExtent } from '../format/luks-header.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import type { Qcow2Image } from './image.ts';

/**
 * Where the references go: check counts them as expected refcounts (and reports what is damaged),
 * the space figures as metadata. `add` answers whether the range could be taken (a walk stops at one
 * that could not).
 */
export interface ExtensionReferenceSink {
  add(offset: number, bytes: number): boolean;
  corruption(message: string): void;
}

const TWO_32 = 0x1_0000_0000;
/** QEMU's limits (block/qcow2.h): 65535 bitmaps, a directory of at most 64 MiB. */
const MAX_BITMAPS = 65535;
const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;
/** BME_MAX_TABLE_SIZE: entries of one bitmap table. */
const MAX_BITMAP_TABLE_ENTRIES = 0x800_0000;
const DIRECTORY_ENTRY_FIXED = 24;
/** The directory entry's limits (qcow2.txt "Bitmap directory"): type 1 only, granularity 2^9..2^31 bytes, two flags, names up to 1023 bytes. */
const BITMAP_TYPE_DIRTY_TRACKING = 1;
const MIN_GRANULARITY_BITS = 9;
const MAX_GRANULARITY_BITS = 31;
const BITMAP_IN_USE = 1 << 0;
const KNOWN_BITMAP_FLAGS = BITMAP_IN_USE | (1 << 1);
const MAX_BITMAP_NAME_BYTES = 1023;
/** BME_MAX_PHYS_SIZE: the clusters one bitmap's table may name, in bytes. */
const MAX_BITMAP_BYTES = 0x2000_0000;
const TABLE_CHUNK_ENTRIES = 8192;

/** A u64 field as a number, or null where it cannot be an offset or size in any real file. */
function u64(data: DataView, position: number): number | null {
  const high = data.getUint32(position);
  if (high > 0x1f_ffff) return null;
  return high * TWO_32 + data.getUint32(position + 4);
}

export function scanEncryptionHeader(image: Qcow2Image, sink: ExtensionReferenceSink): void {
  const extension = findExtension(image.header, EXT_CRYPTO_HEADER);
  if (extension === undefined) return;
  if (extension.data.length < 16) {
    sink.corruption('ERROR the encryption header extension is too short');
    return;
  }
  const data = view(extension.data);
  const offset = u64(data, 0);
  const length = u64(data, 8);
  if (offset === null || length === null) {
    sink.corruption('ERROR the encryption header extension names an impossible offset or length');
    return;
  }
  sink.add(offset, length);
  // The LUKS header says itself how far its key material reaches. Where that is past the length the
  // extension gives (a damaged length: QEMU refuses the image), the clusters in between still hold
  // key slots: counted as used, so no repair frees them and no later write lands on the key.
  const extent = luksStatedExtent(readZeroFilled(image.file, offset, LUKS_PHDR_BYTES));
  if (extent === null || extent <= length) return;
  sink.corruption(`ERROR the encryption header extension gives the LUKS area ${length} bytes, but its key material reaches ${extent} bytes; the clusters up to there are kept`);
  const counted = alignUp(offset + length, image.clusterBytes);
  if (offset + extent > counted) sink.add(counted, offset + extent - counted);
}

export function scanBitmaps(image: Qcow2Image, sink: ExtensionReferenceSink): void {
  // Without the autoclear bit the extension is stale (a program that did not know bitmaps wrote the image).
  if ((image.header.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return;
  const extension = findExtension(image.header, EXT_BITMAPS);
  if (extension === undefined) return;
  if (extension.data.length < 24) {
    sink.corruption('ERROR the bitmaps extension is too short');
    return;
  }
  const data = view(extension.data);
  const count = data.getUint32(0);
  const directoryBytes = u64(data, 8);
  const directoryOffset = u64(data, 16);
  if (count === 0) {
    // The spec asks for at least one; QEMU refuses the image. Its directory and tables, if any, are still walked below (not leaks to free).
    sink.corruption('ERROR the bitmaps extension names no bitmaps');
    if (directoryBytes === null || directoryBytes === 0) return;
  }
  if (count > MAX_BITMAPS || directoryBytes === null || directoryOffset === null || directoryBytes > MAX_BITMAP_DIRECTORY_BYTES) {
    sink.corruption('ERROR the bitmaps extension is invalid');
    return;
  }
  if (directoryOffset % image.clusterBytes !== 0) sink.corruption('ERROR the bitmap directory is not at the start of a cluster');
  if (!sink.add(directoryOffset, directoryBytes)) return;
  const directory = readZeroFilled(image.file, directoryOffset, directoryBytes);
  const directoryView = view(directory);
  // Every entry the directory holds is walked, even past the count the extension gives: a table
  // only an uncounted entry names is still the bitmap's, not a leak for a repair to free.
  let position = 0;
  let index = 0;
  for (; index < count || position < directory.length; index++) {
    if (position + DIRECTORY_ENTRY_FIXED > directory.length) {
      sink.corruption(`ERROR bitmap directory entry ${index} lies past the end of the directory`);
      return;
    }
    const entry = readDirectoryEntry(directoryView, position);
    const length = DIRECTORY_ENTRY_FIXED + entry.extraBytes + entry.nameBytes;
    if (position + length > directory.length) {
      sink.corruption(`ERROR bitmap directory entry ${index} lies past the end of the directory`);
      return;
    }
    const problem = entryProblem(entry, image);
    if (problem !== null) sink.corruption(`ERROR bitmap ${index} ${problem}`);
    if (entry.tableOffset === null || entry.tableOffset % image.clusterBytes !== 0 || entry.tableEntries > MAX_BITMAP_TABLE_ENTRIES) {
      if (problem === null) sink.corruption(`ERROR bitmap ${index} has an invalid bitmap table`);
    } else {
      scanBitmapTable(image, sink, index, entry.tableOffset, entry.tableEntries);
    }
    position += Math.ceil(length / 8) * 8;
  }
  if (index !== count && count !== 0) sink.corruption(`ERROR the bitmap directory holds ${index} bitmaps where the header says ${count}`);
}

interface DirectoryEntry {
  tableOffset: number | null;
  tableEntries: number;
  flags: number;
  type: number;
  granularityBits: number;
  nameBytes: number;
  extraBytes: number;
}

function readDirectoryEntry(directory: DataView, position: number): DirectoryEntry {
  return {
    tableOffset: u64(directory, position),
    tableEntries: directory.getUint32(position + 8),
    flags: directory.getUint32(position + 12),
    type: directory.getUint8(position + 16),
    granularityBits: directory.getUint8(position + 17),
    nameBytes: directory.getUint16(position + 18),
    extraBytes: directory.getUint32(position + 20),
  };
}

/**
 * What QEMU finds wrong with a directory entry (it then refuses to open the image): the format's
 * limits on type, granularity, flags and name, and a table too small to cover the disk.
 */
function entryProblem(entry: DirectoryEntry, image: Qcow2Image): string | null {
  if (entry.type !== BITMAP_TYPE_DIRTY_TRACKING) return `is of an unknown type (${entry.type})`;
  if (entry.granularityBits < MIN_GRANULARITY_BITS || entry.granularityBits > MAX_GRANULARITY_BITS) return `has an invalid granularity (2^${entry.granularityBits} bytes)`;
  if ((entry.flags & ~KNOWN_BITMAP_FLAGS) !== 0) return `has reserved flags set (0x${entry.flags.toString(16)})`;
  if (entry.nameBytes > MAX_BITMAP_NAME_BYTES) return `has a name longer than ${MAX_BITMAP_NAME_BYTES} bytes`;
  if (entry.tableEntries === 0 || entry.tableOffset === 0) return 'has no bitmap table';
  if (entry.tableEntries * image.clusterBytes > MAX_BITMAP_BYTES) return `is larger than QEMU allows (${MAX_BITMAP_BYTES} bytes)`;
  // A bitmap in use was being written when its program stopped: QEMU leaves its size alone too.
  const tracked = entry.tableEntries * image.clusterBytes * 8 * 2 ** entry.granularityBits;
  if ((entry.flags & BITMAP_IN_USE) === 0 && tracked < image.virtualSize) return 'is too small for the disk';
  return null;
}

function scanBitmapTable(image: Qcow2Image, sink: ExtensionReferenceSink, bitmap: number, tableOffset: number, entries: number): void {
  if (!sink.add(tableOffset, entries * 8)) return;
  const clusterBytes = image.clusterBytes;
  for (let first = 0; first < entries; first += TABLE_CHUNK_ENTRIES) {
    const chunkEntries = Math.min(TABLE_CHUNK_ENTRIES, entries - first);
    const chunk = view(readZeroFilled(image.file, tableOffset + first * 8, chunkEntries * 8));
    for (let index = 0; index < chunkEntries; index++) {
      const high = chunk.getUint32(index * 8);
      const low = chunk.getUint32(index * 8 + 4);
      if (high === 0 && low === 0) continue;
      const offset = (high & 0x00ff_ffff) * TWO_32 + ((low & 0xffff_fe00) >>> 0);
      // Reserved: bits 1-8 and 56-63; bit 0 ("all ones") only where no cluster is named.
      const reserved = (high & 0xff00_0000) !== 0 || (low & 0x1fe) !== 0 || (offset !== 0 && (low & 1) !== 0);
      if (reserved || offset % clusterBytes !== 0) {
        sink.corruption(`ERROR bitmap ${bitmap} table entry ${first + index} is invalid: ${hexEntry(high, low)}`);
        continue;
      }
      if (offset !== 0) sink.add(offset, clusterBytes);
    }
  }
}
