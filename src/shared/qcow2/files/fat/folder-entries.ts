/**
 * A FAT folder's bytes as entries: 32-byte slots, the 8.3 entry last, the VFAT long-name slots
 * before it in reverse order, each carrying the short name's checksum. A long name whose
 * sequence or checksum does not match is dropped and the 8.3 name shown, as Windows and Linux do.
 * Hostile names never become path components: an entry whose name cannot be one ("", ".", "..",
 * a "/" or a control byte) is left out of the listing.
 */
import { LONG_NAME_UNITS_PER_ENTRY, longNameText, longNameUnits, oemText, shortName, shortNameBytesValid, shortNameChecksum, usableName } from './fat-names.ts';
import type { FatWidth } from './boot-sector.ts';

export const ENTRY_BYTES = 32;
/** A folder holds at most 65536 entries (Microsoft's FAT specification), so 2 MiB. */
export const MAX_FOLDER_BYTES = 65536 * ENTRY_BYTES;

const ATTRIBUTE_VOLUME_LABEL = 0x08;
const ATTRIBUTE_DIRECTORY = 0x10;
const ATTRIBUTES_LONG_NAME = 0x0f;
const LAST_LONG_NAME_ENTRY = 0x40;
const MAX_LONG_NAME_ENTRIES = 20;
const DELETED = 0xe5;

export interface FatFolderEntry {
  /** The long name, else the 8.3 name with NT's case bits. */
  name: string;
  /** The 8.3 name as stored ("README.TXT"): FAT finds an entry by it too. */
  shortName: string;
  isDirectory: boolean;
  firstCluster: number;
  /** Bytes of a file (0 for a folder: FAT keeps no size for folders). */
  size: number;
  mtimeMs: number | null;
  /** Why a subfolder entry cannot be entered (it names no folder's cluster): listed, refused when read. */
  damage?: string;
}

export interface FatFolder {
  entries: FatFolderEntry[];
  /** The cluster the ".." entry names (0 for the root), or null when the folder has none. */
  parentCluster: number | null;
  /** A volume label entry's text (the root folder keeps the volume's label there). */
  volumeLabel?: string;
}

/** Days before each month (1–12) of a common year; months 13–15 count as none, as Linux counts them. */
const DAYS_BEFORE_MONTH = [0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0];
/** 1970-01-01 to 1980-01-01, FAT's epoch. */
const DAYS_TO_1980 = 3652;
/** FAT's year 120: 2100, not a leap year. */
const YEAR_2100 = 120;

/**
 * A FAT date and time as milliseconds since the epoch. FAT keeps local time without a zone;
 * Cowbell reads it as UTC, so a listing shows the wall-clock time the guest wrote. Out-of-range
 * fields are read as Linux's vfat reads them (fs/fat/misc.c's arithmetic): month and day 0 as 1,
 * an all-zero date as 1980-01-01, February 30 as March 1, a seconds field of 30 as 60 s — what a
 * mount shows, where null left a restored file with the time of the copy (files audit 10).
 */
export function fatTimeMs(date: number, time: number): number {
  const year = date >> 9;
  const month = Math.max(1, (date >> 5) & 0x0f);
  const day = Math.max(1, date & 0x1f) - 1;
  let leapDays = Math.floor((year + 3) / 4);
  if (year > YEAR_2100) leapDays--;
  if ((year & 3) === 0 && year !== YEAR_2100 && month > 2) leapDays++;
  const days = year * 365 + leapDays + (DAYS_BEFORE_MONTH[month] as number) + day + DAYS_TO_1980;
  const seconds = (time & 0x1f) * 2 + ((time >> 5) & 0x3f) * 60 + (time >> 11) * 3600;
  return (days * 86400 + seconds) * 1000;
}

interface PendingLongName {
  checksum: number;
  /** The ordinal the next slot must carry (0 once complete). */
  next: number;
  units: Uint16Array;
}

/** Parses a folder's bytes (a whole number of entries; at most MAX_FOLDER_BYTES, the caller's bound). */
export function parseFolder(bytes: Uint8Array, width: FatWidth): FatFolder {
  const data = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const entries: FatFolderEntry[] = [];
  let parentCluster: number | null = null;
  let volumeLabel: string | undefined;
  let pending: PendingLongName | null = null;
  for (let at = 0; at + ENTRY_BYTES <= bytes.length; at += ENTRY_BYTES) {
    const slot = bytes.subarray(at, at + ENTRY_BYTES);
    const first = slot[0] ?? 0;
    if (first === 0) break;
    if (first === DELETED) {
      pending = null;
      continue;
    }
    const attributes = slot[11] ?? 0;
    if ((attributes & 0x3f) === ATTRIBUTES_LONG_NAME) {
      pending = longNameSlot(slot, pending);
      continue;
    }
    const longName = pending !== null && pending.next === 0 && pending.checksum === shortNameChecksum(slot) ? longNameText(pending.units) : null;
    pending = null;
    if ((attributes & ATTRIBUTE_VOLUME_LABEL) !== 0) {
      volumeLabel ??= oemText(slot.subarray(0, 11)).trimEnd();
      continue;
    }
    // On FAT12/16 the high word of the cluster is not one (OS/2 kept extended attributes there).
    const high = width === 32 ? data.getUint16(at + 20, true) : 0;
    const firstCluster = high * 0x10000 + data.getUint16(at + 26, true);
    const isDirectory = (attributes & ATTRIBUTE_DIRECTORY) !== 0;
    const stored = shortName(slot, false);
    if (stored === '.' || stored === '..') {
      if (stored === '..' && parentCluster === null) parentCluster = firstCluster;
      continue;
    }
    if (!shortNameBytesValid(slot)) continue;
    const name = longName !== null && usableName(longName) ? longName : shortName(slot, true);
    if (!usableName(name)) continue;
    entries.push({
      name,
      shortName: stored,
      isDirectory,
      firstCluster,
      size: isDirectory ? 0 : data.getUint32(at + 28, true),
      mtimeMs: fatTimeMs(data.getUint16(at + 24, true), data.getUint16(at + 22, true)),
    });
  }
  return { entries, parentCluster, ...(volumeLabel === undefined || volumeLabel === '' ? {} : { volumeLabel }) };
}

/** Adds one long-name slot to the sequence under way; a slot out of sequence drops it. */
function longNameSlot(slot: Uint8Array, pending: PendingLongName | null): PendingLongName | null {
  const ordinalByte = slot[0] ?? 0;
  const ordinal = ordinalByte & 0x1f;
  const checksum = slot[13] ?? 0;
  let sequence = pending;
  if ((ordinalByte & LAST_LONG_NAME_ENTRY) !== 0) {
    if (ordinal < 1 || ordinal > MAX_LONG_NAME_ENTRIES) return null;
    sequence = { checksum, next: ordinal, units: new Uint16Array(ordinal * LONG_NAME_UNITS_PER_ENTRY) };
  } else if (sequence === null || sequence.next === 0 || ordinal !== sequence.next || checksum !== sequence.checksum) {
    return null;
  }
  longNameUnits(slot, sequence.units, (ordinal - 1) * LONG_NAME_UNITS_PER_ENTRY);
  sequence.next--;
  return sequence;
}
