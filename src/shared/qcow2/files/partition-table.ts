/**
 * A guest disk's partition table: GPT (header and entry array, both CRC-checked; the backup table
 * at the disk's last sector when the primary is damaged) or MBR (four primary entries and the
 * chain of extended boot records behind an extended one). Hand-written rather than the npm `gpt`
 * and `mbr` packages: those parse a caller's whole buffer without bounding the entry count, do not
 * follow an extended chain, and the bounds checks below are most of the work anyway. Every number
 * read is checked against the disk and fixed limits: a hostile table gives FILESYSTEM_CORRUPT or a
 * partition with a `problem`, never a loop or an unbounded allocation.
 */
import { Qcow2Error } from '../errors.ts';

export const SECTOR_BYTES = 512;
/** More GPT entry bytes than this (the usual array is 16 KiB) is refused. */
const MAX_GPT_ENTRY_BYTES = 1024 * 1024;
/** More logical partitions than this in an extended chain is treated as a loop. */
const MAX_LOGICAL_PARTITIONS = 128;
/** GPT's CRC-32 (node:zlib's), taken on first use: importing node:zlib costs every files command's start-up a few milliseconds. */
function crc32(bytes: Uint8Array): number {
  return process.getBuiltinModule('node:zlib').crc32(bytes);
}

const EXTENDED_TYPES = new Set([0x05, 0x0f, 0x85]);
const GPT_PROTECTIVE_TYPE = 0xee;

export interface Partition {
  /** Its number as Linux names it: GPT entry index + 1; MBR slot 1–4, logical partitions from 5. */
  number: number;
  offset: number;
  length: number;
  /** MBR type byte ("0x83") or GPT type GUID. */
  type: string;
  /** Why the partition cannot be read as it is described (it lies past the disk's end). */
  problem?: string;
}

export interface PartitionTable {
  table: 'mbr' | 'gpt';
  partitions: Partition[];
}

/** Reads guest bytes: fills buffer from offset (the caller keeps it inside the disk). */
export type ReadBytes = (buffer: Uint8Array, offset: number) => void;

/** Whether the disk starts with a GPT header (at LBA 1 for 512-byte sectors, or 4096-byte ones). */
export function hasGptSignature(read: ReadBytes, diskLength: number): boolean {
  return gptSectorBytes(read, diskLength) !== null;
}

/**
 * The disk's partition table, or null when it has none (no GPT signature, no valid MBR). Call it
 * after checking for a whole-disk filesystem: a FAT boot sector carries the MBR's 0x55AA too.
 */
export function readPartitionTable(read: ReadBytes, diskLength: number): PartitionTable | null {
  const gptSector = gptSectorBytes(read, diskLength);
  if (gptSector !== null) return { table: 'gpt', partitions: readGpt(read, diskLength, gptSector) };
  const mbr = readSector(read, 0, SECTOR_BYTES, diskLength);
  if (mbr === null || !isMbr(mbr)) return null;
  const entries = mbrEntries(mbr);
  if (entries.some((entry) => entry.type === GPT_PROTECTIVE_TYPE)) {
    throw new Qcow2Error('FILESYSTEM_CORRUPT', 'The disk has a protective MBR but no readable GPT header');
  }
  return { table: 'mbr', partitions: readMbr(read, diskLength, entries) };
}

// ---------------------------------------------------------------- MBR

interface MbrEntry {
  slot: number;
  status: number;
  type: number;
  startSector: number;
  sectorCount: number;
}

function mbrEntries(sector: Uint8Array): MbrEntry[] {
  const view = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
  return [0, 1, 2, 3].map((slot) => {
    const at = 446 + slot * 16;
    return { slot: slot + 1, status: view.getUint8(at), type: view.getUint8(at + 4), startSector: view.getUint32(at + 8, true), sectorCount: view.getUint32(at + 12, true) };
  });
}

/** The boot signature, every status byte 0x00 or 0x80, and at least one used entry. */
function isMbr(sector: Uint8Array): boolean {
  if (sector[510] !== 0x55 || sector[511] !== 0xaa) return false;
  const entries = mbrEntries(sector);
  return entries.every((entry) => entry.status === 0 || entry.status === 0x80) && entries.some((entry) => entry.type !== 0 && entry.sectorCount > 0);
}

function readMbr(read: ReadBytes, diskLength: number, entries: MbrEntry[]): Partition[] {
  const partitions: Partition[] = [];
  let extended: MbrEntry | null = null;
  for (const entry of entries) {
    if (entry.type === 0 || entry.sectorCount === 0) continue;
    if (EXTENDED_TYPES.has(entry.type)) {
      extended ??= entry;
      continue;
    }
    partitions.push(partition(entry.slot, entry.startSector * SECTOR_BYTES, entry.sectorCount * SECTOR_BYTES, mbrType(entry.type), diskLength));
  }
  if (extended !== null) partitions.push(...readLogicalPartitions(read, diskLength, extended));
  return partitions;
}

/**
 * The logical partitions of an extended partition's chain of boot records, bounded and loop-checked.
 * A record that loops back, lies past the disk's end or has no boot signature ends the chain: the
 * partitions before it are kept, as Linux (partx, the kernel) keeps them.
 */
function readLogicalPartitions(read: ReadBytes, diskLength: number, extended: MbrEntry): Partition[] {
  const partitions: Partition[] = [];
  const extendedStart = extended.startSector;
  const visited = new Set<number>();
  let recordSector = extendedStart;
  while (partitions.length < MAX_LOGICAL_PARTITIONS) {
    if (visited.has(recordSector)) return partitions;
    visited.add(recordSector);
    const record = readSector(read, recordSector * SECTOR_BYTES, SECTOR_BYTES, diskLength);
    if (record === null || record[510] !== 0x55 || record[511] !== 0xaa) return partitions;
    const entries = mbrEntries(record);
    const logical = entries[0] as MbrEntry;
    const next = entries[1] as MbrEntry;
    if (logical.type !== 0 && logical.sectorCount > 0) {
      partitions.push(partition(5 + partitions.length, (recordSector + logical.startSector) * SECTOR_BYTES, logical.sectorCount * SECTOR_BYTES, mbrType(logical.type), diskLength));
    }
    if (next.type === 0 || next.sectorCount === 0 || !EXTENDED_TYPES.has(next.type)) return partitions;
    recordSector = extendedStart + next.startSector;
  }
  throw new Qcow2Error('FILESYSTEM_CORRUPT', `The extended partition holds more than ${MAX_LOGICAL_PARTITIONS} logical partitions`);
}

function mbrType(type: number): string {
  return `0x${type.toString(16).padStart(2, '0')}`;
}

// ---------------------------------------------------------------- GPT

interface GptHeader {
  entriesLba: number;
  entryCount: number;
  entryBytes: number;
  entriesCrc: number;
}

/**
 * The sector size whose primary GPT header (LBA 1) has the signature; else, on a disk with a
 * protective MBR, the one whose backup header (the last sector) has it.
 */
function gptSectorBytes(read: ReadBytes, diskLength: number): number | null {
  const sizes = [512, 4096];
  const primary = sizes.find((sectorBytes) => hasGptSignatureAt(read, diskLength, sectorBytes, 1));
  if (primary !== undefined) return primary;
  if (!hasProtectiveMbr(read, diskLength)) return null;
  return sizes.find((sectorBytes) => hasGptSignatureAt(read, diskLength, sectorBytes, backupLba(diskLength, sectorBytes))) ?? null;
}

function hasGptSignatureAt(read: ReadBytes, diskLength: number, sectorBytes: number, lba: number): boolean {
  const header = readSector(read, lba * sectorBytes, 8, diskLength);
  return header !== null && String.fromCharCode(...header) === 'EFI PART';
}

function hasProtectiveMbr(read: ReadBytes, diskLength: number): boolean {
  const mbr = readSector(read, 0, SECTOR_BYTES, diskLength);
  return mbr !== null && mbr[510] === 0x55 && mbr[511] === 0xaa && mbrEntries(mbr).some((entry) => entry.type === GPT_PROTECTIVE_TYPE);
}

function backupLba(diskLength: number, sectorBytes: number): number {
  return Math.floor(diskLength / sectorBytes) - 1;
}

/** The primary table (header at LBA 1 and its entries), else the backup (header at the last sector, with its own entries). */
function readGpt(read: ReadBytes, diskLength: number, sectorBytes: number): Partition[] {
  const primary = readGptTable(read, diskLength, sectorBytes, 1);
  if (typeof primary !== 'string') return gptPartitions(primary, sectorBytes, diskLength);
  const backup = readGptTable(read, diskLength, sectorBytes, backupLba(diskLength, sectorBytes));
  if (typeof backup !== 'string') return gptPartitions(backup, sectorBytes, diskLength);
  throw new Qcow2Error('FILESYSTEM_CORRUPT', `The GPT partition table is damaged: ${primary}; its backup: ${backup}`);
}

interface GptTable {
  header: GptHeader;
  entries: Uint8Array;
}

/** The header at `lba` and the entry array it names, or why they cannot be used. */
function readGptTable(read: ReadBytes, diskLength: number, sectorBytes: number, lba: number): GptTable | string {
  const header = parseGptHeader(read, diskLength, sectorBytes, lba);
  if (typeof header === 'string') return header;
  const entries = readSector(read, header.entriesLba * sectorBytes, header.entryCount * header.entryBytes, diskLength);
  if (entries === null) return 'the partition entries lie past the end of the disk';
  if (crc32(entries) !== header.entriesCrc) return 'the partition entries do not match their checksum';
  return { header, entries };
}

function gptPartitions({ header, entries }: GptTable, sectorBytes: number, diskLength: number): Partition[] {
  const view = new DataView(entries.buffer, entries.byteOffset, entries.byteLength);
  const partitions: Partition[] = [];
  for (let index = 0; index < header.entryCount; index++) {
    const at = index * header.entryBytes;
    const typeGuid = entries.subarray(at, at + 16);
    if (typeGuid.every((byte) => byte === 0)) continue;
    const firstLba = view.getBigUint64(at + 32, true);
    const lastLba = view.getBigUint64(at + 40, true);
    const offset = Number(firstLba) * sectorBytes;
    const length = lastLba >= firstLba ? Number(lastLba - firstLba + 1n) * sectorBytes : 0;
    const entry = partition(index + 1, offset, length, guidString(typeGuid), diskLength);
    if (lastLba < firstLba) entry.problem = `its last sector (${lastLba}) comes before its first (${firstLba})`;
    partitions.push(entry);
  }
  return partitions;
}

/** The header at `lba`, or why it cannot be used. */
function parseGptHeader(read: ReadBytes, diskLength: number, sectorBytes: number, lba: number): GptHeader | string {
  const sector = readSector(read, lba * sectorBytes, sectorBytes, diskLength);
  if (sector === null) return 'the header lies past the end of the disk';
  if (String.fromCharCode(...sector.subarray(0, 8)) !== 'EFI PART') return 'no GPT signature';
  const view = new DataView(sector.buffer, sector.byteOffset, sector.byteLength);
  const headerBytes = view.getUint32(12, true);
  if (headerBytes < 92 || headerBytes > sectorBytes) return `a header size of ${headerBytes} bytes`;
  const checked = sector.slice(0, headerBytes);
  checked.fill(0, 16, 20);
  if (crc32(checked) !== view.getUint32(16, true)) return 'the header does not match its checksum';
  const entriesLba = Number(view.getBigUint64(72, true));
  const entryCount = view.getUint32(80, true);
  const entryBytes = view.getUint32(84, true);
  if (entryBytes < 128 || entryBytes % 128 !== 0 || entryBytes > 4096) return `an entry size of ${entryBytes} bytes`;
  if (entryCount * entryBytes > MAX_GPT_ENTRY_BYTES) return `${entryCount} entries of ${entryBytes} bytes (more than ${MAX_GPT_ENTRY_BYTES} bytes)`;
  return { entriesLba, entryCount, entryBytes, entriesCrc: view.getUint32(88, true) };
}

/** A GUID as text: its first three fields are little-endian. */
function guidString(bytes: Uint8Array): string {
  const hex = (from: number, to: number, reverse: boolean): string => {
    const part = [...bytes.subarray(from, to)];
    return (reverse ? part.reverse() : part).map((byte) => byte.toString(16).padStart(2, '0')).join('');
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`.toUpperCase();
}

// ---------------------------------------------------------------- shared

/**
 * A partition as its table gives it; one that runs past the disk's end is cut there, as Linux cuts
 * it ("extends beyond EOD, truncated") and still mounts what fits: a shrunk or cut-off disk's
 * filesystem may well lie inside (files audit 7: it was refused whole). One that starts past the
 * end holds nothing.
 */
function partition(number: number, offset: number, length: number, type: string, diskLength: number): Partition {
  const result: Partition = { number, offset, length, type };
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset >= diskLength) {
    result.problem = `it lies past the end of the ${diskLength}-byte disk`;
  } else if (offset + length > diskLength) {
    result.length = diskLength - offset;
  }
  return result;
}

/** `length` bytes at offset, or null when they are not all inside the disk. */
function readSector(read: ReadBytes, offset: number, length: number, diskLength: number): Uint8Array | null {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + length > diskLength) return null;
  const buffer = new Uint8Array(length);
  read(buffer, offset);
  return buffer;
}
