/**
 * The snapshot table (qcow2.txt "Snapshots"): entries of a 40-byte fixed part, extra data, id and
 * name, each entry padded to 8 bytes. Extra data Cowbell does not understand is kept byte for byte.
 */
import { Qcow2Error } from '../errors.ts';
import { readU64Number, view, writeU64Number } from './bytes.ts';
import { decodeString, encodeString } from './header.ts';
import { MAX_SNAPSHOT_EXTRA_DATA, MAX_SNAPSHOT_TABLE_BYTES } from './limits.ts';

export interface SnapshotEntry {
  l1TableOffset: number;
  l1Size: number;
  id: string;
  name: string;
  dateSec: number;
  dateNsec: number;
  /** VM clock in nanoseconds; a u64 on disk, kept exact as a bigint. */
  vmClockNsec: bigint;
  /** The 32-bit field; `vmStateSizeLarge` (extra data) supersedes it when present. */
  vmStateSize32: number;
  vmStateSizeLarge: bigint | null;
  diskSize: number | null;
  icount: bigint | null;
  /**
   * The whole extra data as on disk (or as made for a new snapshot). Serialising patches the
   * known fields above into it where it is long enough, so unknown bytes are kept exactly.
   */
  extraData: Uint8Array;
}

const FIXED = 40;
/** The most one entry can take: its fixed part, the most extra data, an id and a name of 65535 bytes each, padding. */
export const MAX_SNAPSHOT_ENTRY_BYTES = FIXED + MAX_SNAPSHOT_EXTRA_DATA + 2 * 0xffff + 7;

/**
 * An id or name as QEMU reads it: a C string, so it ends at its first NUL byte (a table cut short
 * reads zeros past the end of the file, and QEMU takes what comes before them).
 */
function decodeSnapshotString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  return decodeString(nul < 0 ? bytes : bytes.subarray(0, nul));
}

export function snapshotVmStateSize(entry: SnapshotEntry): number {
  return Number(entry.vmStateSizeLarge ?? BigInt(entry.vmStateSize32));
}

/** Bytes the first `count` entries of an on-disk table occupy (after parseSnapshotTable accepted them). */
export function snapshotTableLength(bytes: Uint8Array, count: number): number {
  const data = view(bytes);
  let position = 0;
  for (let index = 0; index < count; index++) {
    const length = FIXED + data.getUint32(position + 36) + data.getUint16(position + 12) + data.getUint16(position + 14);
    position = Math.ceil((position + length) / 8) * 8;
  }
  return position;
}

/** `bytesInFile`: how much of `bytes` the file holds (the rest zeros, as QEMU reads past its end); an entry must start inside it. */
export function parseSnapshotTable(bytes: Uint8Array, count: number, version: 2 | 3, bytesInFile = bytes.length): SnapshotEntry[] {
  const data = view(bytes);
  const entries: SnapshotEntry[] = [];
  let position = 0;
  for (let index = 0; index < count; index++) {
    if (position + FIXED > Math.min(bytes.length, bytesInFile)) throw new Qcow2Error('TRUNCATED', `Snapshot table entry ${index} is cut short`);
    const l1TableOffset = readU64Number(data, position, `Snapshot ${index} L1 table offset`);
    const l1Size = data.getUint32(position + 8);
    const idSize = data.getUint16(position + 12);
    const nameSize = data.getUint16(position + 14);
    const dateSec = data.getUint32(position + 16);
    const dateNsec = data.getUint32(position + 20);
    const vmClockNsec = data.getBigUint64(position + 24);
    const vmStateSize32 = data.getUint32(position + 32);
    const extraSize = data.getUint32(position + 36);
    if (extraSize > MAX_SNAPSHOT_EXTRA_DATA) throw new Qcow2Error('CORRUPT', `Snapshot ${index} has ${extraSize} bytes of extra data (at most ${MAX_SNAPSHOT_EXTRA_DATA})`);
    if (version === 3 && extraSize < 16) throw new Qcow2Error('CORRUPT', `Snapshot ${index} lacks the extra data a version 3 image requires`);
    const extraStart = position + FIXED;
    const end = extraStart + extraSize + idSize + nameSize;
    if (end > bytes.length) throw new Qcow2Error('TRUNCATED', `Snapshot table entry ${index} runs past the table`);
    const extra = bytes.subarray(extraStart, extraStart + extraSize);
    const extraView = view(extra);
    const vmStateSizeLarge = extraSize >= 8 ? extraView.getBigUint64(0) : null;
    const diskSize = extraSize >= 16 ? readU64Number(extraView, 8, `Snapshot ${index} disk size`) : null;
    const icount = extraSize >= 24 ? extraView.getBigUint64(16) : null;
    const idStart = extraStart + extraSize;
    entries.push({
      l1TableOffset,
      l1Size,
      id: decodeSnapshotString(bytes.subarray(idStart, idStart + idSize)),
      name: decodeSnapshotString(bytes.subarray(idStart + idSize, end)),
      dateSec,
      dateNsec,
      vmClockNsec,
      vmStateSize32,
      vmStateSizeLarge,
      diskSize,
      icount,
      extraData: extra.slice(),
    });
    position = Math.ceil(end / 8) * 8;
  }
  return entries;
}

/** An entry a check found unusable: it is dropped by the repair (its id and name, when they could be read). */
export interface DroppedSnapshotEntry {
  index: number;
  id: string | null;
  name: string | null;
  /** What is wrong with the entry, to follow "the entry": "lies past the end of the file". */
  reason: string;
}

export interface SnapshotTableForCheck {
  /** The entries that can be used, in table order. */
  entries: SnapshotEntry[];
  /** Positions (in `entries`) of entries a version 3 image needs more extra data for (qcow2.txt: at least 16 bytes). */
  incomplete: number[];
  dropped: DroppedSnapshotEntry[];
  /** Bytes the usable entries occupy from the start of the table. */
  length: number;
}

/**
 * The snapshot table as check reads it: `bytes` holds what the file has from the table's start
 * (`bytesInFile` of it real, the rest zeros, as QEMU reads past the end of a file). An entry whose
 * fixed part does not lie inside the file, or too broken to say where the next one starts, is
 * dropped with every entry after it; one with a field out of range is dropped alone; one whose extra data, id or name run past the end reads zeros
 * there, as QEMU reads it (a file cut short by a byte keeps its last snapshot). A v3 entry lacking
 * the required extra data is kept and listed as incomplete (a repair completes it, as qemu-img
 * check -r all does).
 */
export function parseSnapshotTableForCheck(bytes: Uint8Array, bytesInFile: number, count: number, version: 2 | 3): SnapshotTableForCheck {
  const data = view(bytes);
  const table: SnapshotTableForCheck = { entries: [], incomplete: [], dropped: [], length: 0 };
  let position = 0;
  const dropRest = (from: number, reason: string, first?: { id: string | null; name: string | null }): void => {
    for (let index = from; index < count; index++) table.dropped.push({ index, id: index === from ? (first?.id ?? null) : null, name: index === from ? (first?.name ?? null) : null, reason });
  };
  for (let index = 0; index < count; index++) {
    if (position + FIXED > bytesInFile) {
      dropRest(index, 'lies past the end of the file');
      return table;
    }
    const idSize = data.getUint16(position + 12);
    const nameSize = data.getUint16(position + 14);
    const extraSize = data.getUint32(position + 36);
    if (extraSize > MAX_SNAPSHOT_EXTRA_DATA) {
      dropRest(index, `claims ${extraSize} bytes of extra data (at most ${MAX_SNAPSHOT_EXTRA_DATA})`);
      return table;
    }
    const end = position + FIXED + extraSize + idSize + nameSize;
    if (end > bytes.length) {
      dropRest(index, 'runs past the end of the file');
      return table;
    }
    let entry: SnapshotEntry | null = null;
    try {
      [entry] = parseSnapshotTable(bytes.subarray(position, end), 1, 2) as [SnapshotEntry];
    } catch (error) {
      // A field out of range (an L1 offset or disk size no file can have): where the entry ends is
      // still known, so it alone is dropped and the entries after it are read as they are.
      const idStart = position + FIXED + extraSize;
      const first = { id: decodeSnapshotString(bytes.subarray(idStart, idStart + idSize)), name: decodeSnapshotString(bytes.subarray(idStart + idSize, end)) };
      table.dropped.push({ index, ...first, reason: `cannot be used (${error instanceof Qcow2Error ? error.message : String(error)})` });
    }
    if (entry !== null) {
      if (version === 3 && extraSize < 16) table.incomplete.push(table.entries.length);
      table.entries.push(entry);
    }
    position = Math.ceil(end / 8) * 8;
    table.length = position;
  }
  return table;
}

export function snapshotEntrySize(entry: SnapshotEntry): number {
  const length = FIXED + entry.extraData.length + encodeString(entry.id).length + encodeString(entry.name).length;
  return Math.ceil(length / 8) * 8;
}

export function serializeSnapshotTable(entries: SnapshotEntry[]): Uint8Array {
  let total = 0;
  for (const entry of entries) total += snapshotEntrySize(entry);
  if (total > MAX_SNAPSHOT_TABLE_BYTES) throw new Qcow2Error('INVALID_ARGUMENT', 'The snapshot table would exceed QEMU\'s 64 MiB limit');
  const bytes = new Uint8Array(total);
  const data = view(bytes);
  let position = 0;
  for (const entry of entries) {
    const id = encodeString(entry.id);
    const name = encodeString(entry.name);
    if (id.length > 0xffff || name.length > 0xffff) throw new Qcow2Error('INVALID_ARGUMENT', 'A snapshot name or id is too long');
    const extraSize = entry.extraData.length;
    if (extraSize > MAX_SNAPSHOT_EXTRA_DATA) throw new Qcow2Error('INVALID_ARGUMENT', 'Snapshot extra data is too long');
    writeU64Number(data, position, entry.l1TableOffset);
    data.setUint32(position + 8, entry.l1Size);
    data.setUint16(position + 12, id.length);
    data.setUint16(position + 14, name.length);
    data.setUint32(position + 16, entry.dateSec);
    data.setUint32(position + 20, entry.dateNsec);
    data.setBigUint64(position + 24, entry.vmClockNsec);
    data.setUint32(position + 32, entry.vmStateSize32);
    data.setUint32(position + 36, extraSize);
    const extraStart = position + FIXED;
    bytes.set(entry.extraData, extraStart);
    if (extraSize >= 8 && entry.vmStateSizeLarge !== null) data.setBigUint64(extraStart, entry.vmStateSizeLarge);
    if (extraSize >= 16 && entry.diskSize !== null) writeU64Number(data, extraStart + 8, entry.diskSize);
    if (extraSize >= 24 && entry.icount !== null) data.setBigUint64(extraStart + 16, entry.icount);
    bytes.set(id, extraStart + extraSize);
    bytes.set(name, extraStart + extraSize + id.length);
    position += snapshotEntrySize(entry);
  }
  return bytes;
}

/**
 * The extra data a repair gives an entry that lacks what version 3 requires, as qemu-img check
 * -r all does: what it had, then the 64-bit VM state size, the disk size it is told, and
 * icount -1 ("not recorded") where missing.
 */
export function completedExtraData(entry: SnapshotEntry, diskSize: number): SnapshotEntry {
  const length = Math.max(24, entry.extraData.length);
  const extraData = new Uint8Array(length);
  extraData.set(entry.extraData);
  return {
    ...entry,
    extraData,
    vmStateSizeLarge: entry.vmStateSizeLarge ?? BigInt(entry.vmStateSize32),
    diskSize: entry.diskSize ?? diskSize,
    icount: entry.icount ?? 0xffff_ffff_ffff_ffffn,
  };
}

/** Extra data for a snapshot Cowbell takes: vm_state_size_large, disk_size, icount (0, as qemu-img writes offline). */
export function newExtraData(vmStateSize: number, diskSize: number): Uint8Array {
  const bytes = new Uint8Array(24);
  const data = view(bytes);
  writeU64Number(data, 0, vmStateSize);
  writeU64Number(data, 8, diskSize);
  data.setBigUint64(16, 0n);
  return bytes;
}

/**
 * A snapshot's creation time as the app shows and pins it (ISO 8601, milliseconds): QEMU gives a
 * new snapshot the lowest free id, so a snapshot another program deleted and made again under the
 * same name may come back with the same id — but not with the same time.
 */
export function snapshotIsoDate(entry: Pick<SnapshotEntry, 'dateSec' | 'dateNsec'>): string {
  return new Date(entry.dateSec * 1000 + Math.floor(entry.dateNsec / 1_000_000)).toISOString();
}
