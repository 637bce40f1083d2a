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
  if (count === 0) return;
  if (count > MAX_BITMAPS || directoryBytes === null || directoryOffset === null || directoryBytes > MAX_BITMAP_DIRECTORY_BYTES) {
    sink.corruption('ERROR the bitmaps extension is invalid');
    return;
  }
  if (!sink.add(directoryOffset, directoryBytes)) return;
  const directory = readZeroFilled(image.file, directoryOffset, directoryBytes);
  const directoryView = view(directory);
  let position = 0;
  for (let index = 0; index < count; index++) {
    if (position + DIRECTORY_ENTRY_FIXED > directory.length) {
      sink.corruption(`ERROR bitmap directory entry ${index} lies past the end of the directory`);
      return;
    }
    const tableOffset = u64(directoryView, position);
    const tableEntries = directoryView.getUint32(position + 8);
    const nameBytes = directoryView.getUint16(position + 18);
    const extraBytes = directoryView.getUint32(position + 20);
    const length = DIRECTORY_ENTRY_FIXED + extraBytes + nameBytes;
    if (position + length > directory.length) {
      sink.corruption(`ERROR bitmap directory entry ${index} lies past the end of the directory`);
      return;
    }
    if (tableOffset === null || tableOffset % image.clusterBytes !== 0 || tableEntries > MAX_BITMAP_TABLE_ENTRIES) {
      sink.corruption(`ERROR bitmap ${index} has an invalid bitmap table`);
    } else {
      scanBitmapTable(image, sink, index, tableOffset, tableEntries);
    }
    position += Math.ceil(length / 8) * 8;
  }
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
