/**
 * Cowbell's own record of the snapshot tree, kept in a snapshot's extra data after the 24 bytes
 * QEMU defines. QEMU keeps extra data it does not understand when it rewrites the snapshot
 * table (block/qcow2-snapshot.c, unknown_extra_data), so the tree survives qemu-img's own
 * snapshot operations.
 *
 *  0  'COWB'              4  u8 version (1)        5  u8 flags (1 = parent known, 2 = current parent,
 *                                                      4 = the parent was inferred, 8 = the current parent was inferred)
 *  6  u16 parent id length 8  u64 active L1 offset when it became the current parent
 * 16  u32 current since (seconds)  20  u32 current since (nanoseconds)  24  parent id bytes, padded to 8
 * The "inferred" flags keep a guess as a guess: a rewrite records the tree it inferred (the new
 * layout could make the guesses come out otherwise) without presenting it as known.
 * Flag 16: after the padded parent id, a u32 checksum of the current L1 table when the mark was
 * set (and 4 bytes reserved): while the current L1 is unchanged, no program has applied another
 * snapshot in place or copied a table on write since, so the mark holds whatever the mappings say.
 * Flag 32: after those, the snapshot's note (qcow2 has no field for one): a u16 length and that
 * many UTF-8 bytes, padded to 8. QEMU refuses extra data over 1024 bytes, so a note is capped at
 * MAX_SNAPSHOT_NOTE_BYTES and a record that would not fit is refused before anything is written.
 */
import { Qcow2Error } from '../errors.ts';
import { readU64Number, view, writeU64Number } from './bytes.ts';
import { decodeString, encodeString } from './header.ts';
import { MAX_SNAPSHOT_EXTRA_DATA } from './limits.ts';
import { MAX_SNAPSHOT_NOTE_BYTES } from '../model.ts';
import type { SnapshotEntry } from './snapshot-table.ts';

const MAGIC = 0x434f5742;
const STANDARD_EXTRA = 24;
const FLAG_PARENT_KNOWN = 1;
const FLAG_CURRENT_PARENT = 2;
const FLAG_PARENT_INFERRED = 4;
const FLAG_CURRENT_INFERRED = 8;
const FLAG_L1_CHECKSUM = 16;
const FLAG_NOTE = 32;

export interface CowbellRecord {
  parentKnown: boolean;
  parentId: string;
  currentParent: boolean;
  activeL1Offset: number;
  currentSinceSec: number;
  currentSinceNsec: number;
  /** The recorded parent is a guess (snapshot-tree.ts inferred it before a rewrite). */
  parentInferred?: boolean;
  /** The current-parent mark is a guess, likewise. */
  currentInferred?: boolean;
  /** With the current-parent mark: l1Checksum() of the current L1 table's bytes when the mark was set. */
  activeL1Checksum?: number;
  /** The user's description of the snapshot; absent or '' for none. */
  note?: string;
}

/** A note's bytes, refused (NOTE_TOO_LONG, INVALID_ARGUMENT) before anything is written when it cannot be kept. */
export function encodeSnapshotNote(note: string): Uint8Array {
  if (note.includes('\0')) throw new Qcow2Error('INVALID_ARGUMENT', 'A snapshot note cannot contain a NUL character');
  const bytes = encodeString(note);
  if (bytes.length > MAX_SNAPSHOT_NOTE_BYTES) {
    throw new Qcow2Error('NOTE_TOO_LONG', `A snapshot note may be at most ${MAX_SNAPSHOT_NOTE_BYTES} bytes of UTF-8; this one is ${bytes.length}`);
  }
  return bytes;
}

/** FNV-1a over an L1 table's bytes: cheap, and any changed entry changes it. */
export function l1Checksum(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (const byte of bytes) hash = Math.imul(hash ^ byte, 0x01000193);
  return hash >>> 0;
}

export function readCowbellRecord(entry: SnapshotEntry): CowbellRecord | null {
  const extra = entry.extraData;
  if (extra.length < STANDARD_EXTRA + 24) return null;
  const data = view(extra);
  if (data.getUint32(STANDARD_EXTRA) !== MAGIC || extra[STANDARD_EXTRA + 4] !== 1) return null;
  const flags = extra[STANDARD_EXTRA + 5] ?? 0;
  const parentLength = data.getUint16(STANDARD_EXTRA + 6);
  if (STANDARD_EXTRA + 24 + parentLength > extra.length) return null;
  let activeL1Offset: number;
  try {
    activeL1Offset = readU64Number(data, STANDARD_EXTRA + 8, 'Cowbell record');
  } catch {
    return null;
  }
  return {
    parentKnown: (flags & FLAG_PARENT_KNOWN) !== 0,
    parentId: decodeString(extra.subarray(STANDARD_EXTRA + 24, STANDARD_EXTRA + 24 + parentLength)),
    currentParent: (flags & FLAG_CURRENT_PARENT) !== 0,
    activeL1Offset,
    currentSinceSec: data.getUint32(STANDARD_EXTRA + 16),
    currentSinceNsec: data.getUint32(STANDARD_EXTRA + 20),
    parentInferred: (flags & FLAG_PARENT_INFERRED) !== 0,
    currentInferred: (flags & FLAG_CURRENT_PARENT) !== 0 && (flags & FLAG_CURRENT_INFERRED) !== 0,
    activeL1Checksum: checksumAfter(extra, data, flags, parentLength),
    note: noteAfter(extra, data, flags, parentLength),
  };
}

/** Bytes from the start of the record to the note: the fixed part, the padded parent id, the checksum if written. */
function noteOffset(flags: number, parentLength: number): number {
  return STANDARD_EXTRA + Math.ceil((24 + parentLength) / 8) * 8 + ((flags & FLAG_L1_CHECKSUM) !== 0 ? 8 : 0);
}

/** The note, or undefined without one; a note cut short is read as none (a rewrite of the record drops it). */
function noteAfter(extra: Uint8Array, data: DataView, flags: number, parentLength: number): string | undefined {
  if ((flags & FLAG_NOTE) === 0) return undefined;
  const at = noteOffset(flags, parentLength);
  if (at + 2 > extra.length) return undefined;
  const length = data.getUint16(at);
  if (at + 2 + length > extra.length) return undefined;
  return decodeString(extra.subarray(at + 2, at + 2 + length));
}

function checksumAfter(extra: Uint8Array, data: DataView, flags: number, parentLength: number): number | undefined {
  if ((flags & FLAG_CURRENT_PARENT) === 0 || (flags & FLAG_L1_CHECKSUM) === 0) return undefined;
  const at = STANDARD_EXTRA + Math.ceil((24 + parentLength) / 8) * 8;
  return at + 8 <= extra.length ? data.getUint32(at) : undefined;
}

/** True when the entry's extra data has room for Cowbell's record (no foreign data after QEMU's fields). */
export function canHoldCowbellRecord(entry: SnapshotEntry): boolean {
  const extra = entry.extraData;
  if (extra.length <= STANDARD_EXTRA) return true;
  return readCowbellRecord(entry) !== null;
}

/**
 * Returns the entry's extra data with the record written after QEMU's 24 bytes (filling those if
 * missing). Refused when the result would exceed QEMU's limit on extra data.
 */
/** QEMU's icount of a snapshot taken without record/replay's instruction counting, when the entry has none. */
const NO_ICOUNT = 0xffff_ffff_ffff_ffffn;

export function withCowbellRecord(entry: SnapshotEntry, record: CowbellRecord, diskSizeFallback: number): Uint8Array {
  const parentId = encodeString(record.parentKnown ? record.parentId : '');
  const checksum = record.currentParent ? record.activeL1Checksum : undefined;
  const note = record.note !== undefined && record.note !== '' ? encodeSnapshotNote(record.note) : null;
  const recordLength = Math.ceil((24 + parentId.length) / 8) * 8;
  const noteAt = STANDARD_EXTRA + recordLength + (checksum === undefined ? 0 : 8);
  const length = noteAt + (note === null ? 0 : Math.ceil((2 + note.length) / 8) * 8);
  if (length > MAX_SNAPSHOT_EXTRA_DATA) {
    throw new Qcow2Error(note === null ? 'INVALID_ARGUMENT' : 'NOTE_TOO_LONG', `Snapshot ${entry.id}'s record would take ${length} bytes of extra data, more than the ${MAX_SNAPSHOT_EXTRA_DATA} QEMU accepts`);
  }
  const extra = new Uint8Array(length);
  extra.set(entry.extraData.subarray(0, STANDARD_EXTRA));
  const data = view(extra);
  if (entry.extraData.length < 8) writeU64Number(data, 0, entry.vmStateSize32);
  if (entry.extraData.length < 16) writeU64Number(data, 8, entry.diskSize ?? diskSizeFallback);
  // An entry from before QEMU 5.2 has no icount: QEMU reads it as -1 ("none") and writes it back so.
  if (entry.extraData.length < 24) data.setBigUint64(16, NO_ICOUNT);
  data.setUint32(STANDARD_EXTRA, MAGIC);
  extra[STANDARD_EXTRA + 4] = 1;
  extra[STANDARD_EXTRA + 5] =
    (record.parentKnown ? FLAG_PARENT_KNOWN : 0) |
    (record.currentParent ? FLAG_CURRENT_PARENT : 0) |
    (record.parentKnown && record.parentInferred === true ? FLAG_PARENT_INFERRED : 0) |
    (record.currentParent && record.currentInferred === true ? FLAG_CURRENT_INFERRED : 0) |
    (checksum === undefined ? 0 : FLAG_L1_CHECKSUM) |
    (note === null ? 0 : FLAG_NOTE);
  data.setUint16(STANDARD_EXTRA + 6, parentId.length);
  writeU64Number(data, STANDARD_EXTRA + 8, record.currentParent ? record.activeL1Offset : 0);
  data.setUint32(STANDARD_EXTRA + 16, record.currentParent ? record.currentSinceSec : 0);
  data.setUint32(STANDARD_EXTRA + 20, record.currentParent ? record.currentSinceNsec : 0);
  extra.set(parentId, STANDARD_EXTRA + 24);
  if (checksum !== undefined) data.setUint32(STANDARD_EXTRA + recordLength, checksum);
  if (note !== null) {
    data.setUint16(noteAt, note.length);
    extra.set(note, noteAt + 2);
  }
  return extra;
}
