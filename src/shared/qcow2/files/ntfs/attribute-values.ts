/** The small resident attribute values the reader needs: $STANDARD_INFORMATION, $FILE_NAME, $ATTRIBUTE_LIST entries, $VOLUME_NAME. */
import { corrupt, LeBytes } from './bytes.ts';

/** FILETIME counts 100 ns intervals from 1601-01-01 UTC; this many milliseconds lie between then and 1970. */
const FILETIME_EPOCH_OFFSET_MS = 11_644_473_600_000;

/** A FILETIME as milliseconds since the Unix epoch (null when unset). */
export function filetimeToMs(filetime: bigint): number | null {
  if (filetime === 0n) return null;
  return Number(filetime / 10_000n) - FILETIME_EPOCH_OFFSET_MS;
}

export interface StandardInformation {
  modifiedMs: number | null;
  fileAttributes: number;
}

export function parseStandardInformation(value: Uint8Array, what: string): StandardInformation {
  const bytes = new LeBytes(value, `${what} $STANDARD_INFORMATION`);
  return { modifiedMs: filetimeToMs(bytes.u64Big(0x08)), fileAttributes: bytes.u32(0x20) };
}

/** $FILE_NAME namespaces: a DOS name is the 8.3 alias of a Win32 one; "Win32 and DOS" is both in one. */
export const NAMESPACE = { posix: 0, win32: 1, dos: 2, win32AndDos: 3 } as const;

export interface FileName {
  parentReference: bigint;
  name: string;
  namespace: number;
  fileAttributes: number;
  /** Copies of the file's size and modification time, as last written into this name (folder indexes keep them). */
  dataSize: bigint;
  modifiedMs: number | null;
}

/** $FILE_NAME's flag for a name whose file has a directory index. */
export const FILE_NAME_IS_DIRECTORY = 0x10000000;

export function parseFileName(value: Uint8Array, what: string): FileName {
  const bytes = new LeBytes(value, `${what} $FILE_NAME`);
  const nameLength = bytes.u8(0x40);
  const namespace = bytes.u8(0x41);
  if (namespace > NAMESPACE.win32AndDos) throw corrupt(`${what}: file name namespace ${namespace}`);
  if (nameLength === 0) throw corrupt(`${what}: an empty file name`);
  return {
    parentReference: bytes.u64Big(0),
    name: bytes.fileName(0x42, nameLength),
    namespace,
    fileAttributes: bytes.u32(0x38),
    dataSize: bytes.u64Big(0x30),
    modifiedMs: filetimeToMs(bytes.u64Big(0x10)),
  };
}

export interface AttributeListEntry {
  type: number;
  name: string;
  firstVcn: number;
  recordNumber: number;
  id: number;
}

export function parseAttributeList(value: Uint8Array, what: string): AttributeListEntry[] {
  const bytes = new LeBytes(value, `${what} $ATTRIBUTE_LIST`);
  const entries: AttributeListEntry[] = [];
  let position = 0;
  while (position + 0x1a <= value.length) {
    const length = bytes.u16(position + 4);
    if (length < 0x1a || length % 8 !== 0 || position + length > value.length) throw corrupt(`${what}: attribute list entry at ${position} has length ${length}`);
    const entry = new LeBytes(value.subarray(position, position + length), `${what} attribute list entry`);
    const nameLength = entry.u8(6);
    entries.push({
      type: entry.u32(0),
      name: nameLength === 0 ? '' : entry.utf16(entry.u8(7), nameLength),
      firstVcn: entry.u64(8, 'its first VCN'),
      recordNumber: Number(entry.u64Big(0x10) & 0xffff_ffff_ffffn),
      id: entry.u16(0x18),
    });
    position += length;
  }
  return entries;
}
