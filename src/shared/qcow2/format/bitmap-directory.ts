/**
 * The persistent dirty bitmaps a qcow2 v3 image lists (qcow2.txt "Bitmaps extension" and "Bitmap
 * directory"), as far as `qemu-img info` shows them: name, flags, granularity. Cowbell keeps no
 * bitmap up to date (an image holding some is opened read-only), but says which there are.
 */
import { Qcow2Error } from '../errors.ts';
import { view } from './bytes.ts';

/** The bitmaps extension: count (u32), reserved (u32), directory size (u64), directory offset (u64). */
export const BITMAPS_EXTENSION_BYTES = 24;
/** The fixed part of a directory entry; the extra data and then the name follow it, the entry padded to 8 bytes. */
const ENTRY_FIXED_BYTES = 24;
const FLAG_IN_USE = 1;
const FLAG_AUTO = 2;
/** QEMU's limits (block/qcow2.h): 65535 bitmaps, a directory of at most 64 MiB. */
export const MAX_BITMAPS = 65535;
export const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;

export interface BitmapsExtension {
  count: number;
  directoryBytes: number;
  directoryOffset: number;
}

export interface BitmapEntry {
  /** As qemu-img info names them: "in-use" (not saved cleanly), "auto" (tracks writes). */
  flags: ('in-use' | 'auto')[];
  name: string;
  granularity: number;
}

export function parseBitmapsExtension(data: Uint8Array): BitmapsExtension {
  if (data.length < BITMAPS_EXTENSION_BYTES) throw new Qcow2Error('CORRUPT', 'The bitmaps extension is too short');
  const fields = view(data);
  const count = fields.getUint32(0);
  const directoryBytes = Number(fields.getBigUint64(8));
  const directoryOffset = Number(fields.getBigUint64(16));
  if (count > MAX_BITMAPS || directoryBytes > MAX_BITMAP_DIRECTORY_BYTES || !Number.isSafeInteger(directoryOffset)) throw new Qcow2Error('CORRUPT', 'The bitmaps extension is invalid');
  return { count, directoryBytes, directoryOffset };
}

/** The `count` entries of a bitmap directory; CORRUPT where one runs past its end. */
export function parseBitmapDirectory(directory: Uint8Array, count: number): BitmapEntry[] {
  const fields = view(directory);
  const decoder = new TextDecoder();
  const entries: BitmapEntry[] = [];
  let position = 0;
  for (let index = 0; index < count; index++) {
    if (position + ENTRY_FIXED_BYTES > directory.length) throw new Qcow2Error('CORRUPT', `Bitmap directory entry ${index} lies past the end of the directory`);
    const flags = fields.getUint32(position + 12);
    const granularityBits = directory[position + 17] ?? 0;
    const nameBytes = fields.getUint16(position + 18);
    const extraBytes = fields.getUint32(position + 20);
    const nameStart = position + ENTRY_FIXED_BYTES + extraBytes;
    if (nameStart + nameBytes > directory.length) throw new Qcow2Error('CORRUPT', `Bitmap directory entry ${index} lies past the end of the directory`);
    // qemu-img's key order, so the two JSON outputs read alike.
    entries.push({
      flags: [...((flags & FLAG_IN_USE) !== 0 ? (['in-use'] as const) : []), ...((flags & FLAG_AUTO) !== 0 ? (['auto'] as const) : [])],
      name: decoder.decode(directory.subarray(nameStart, nameStart + nameBytes)),
      granularity: 2 ** granularityBits,
    });
    position += Math.ceil((ENTRY_FIXED_BYTES + extraBytes + nameBytes) / 8) * 8;
  }
  return entries;
}
