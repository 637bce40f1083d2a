/**
 * Changing the backing file an image names (rebase; `-u` does nothing else). The name lives in
 * the header cluster after the extensions, and its offset and length in the fixed header, so a
 * change made in place could, cut short, pair the new length with the old name's bytes. Instead the
 * new name goes first to bytes the current header does not use, durably, and then writes of one
 * sector each switch the fixed header (and the backing-format extension) to it. A caller with a
 * flush of its own to make before the switch stages the name first and lets that flush carry it.
 */
import { Qcow2Error } from '../errors.ts';
import { encodeString, EXT_BACKING_FORMAT, serializeHeaderArea, type Header, type HeaderExtension } from '../format/header.ts';
import { alignUp, view, writeU64Number } from '../format/bytes.ts';
import { bytesEqual } from '../format/zeroes.ts';
import type { Qcow2Image } from '../image/image.ts';

export function switchBackingFile(image: Qcow2Image, name: string | null, format: 'qcow2' | 'raw' | null): void {
  const staged = stageBackingName(image, name, format);
  image.file.flush();
  finishBackingSwitch(image, staged);
}

/** A switch under way: the new name and format, and how the header gets there. */
export interface StagedBackingName {
  readonly name: string | null;
  readonly format: 'qcow2' | 'raw' | null;
  /** Where the new name was written ahead of the header; null: nowhere (no name, or the whole area is written at the switch). */
  readonly at: number | null;
  /** The extensions as the header will list them, in file order. */
  readonly extensions: HeaderExtension[];
  /** Where a backing-format extension is appended (over the old end marker, its data and a new end marker already written); null: none appended. */
  readonly appendAt: number | null;
  /** Whether an existing backing-format extension takes another format in place: then the name and the format must change in one write. */
  readonly formatInPlace: boolean;
}

/** The sector QEMU, and a disk, are taken to write whole: a header change that spans two can land half-done. */
const SECTOR = 512;
/** The backing file offset (8 bytes) and size (4) in the fixed header, both in its first sector. */
const NAME_FIELDS = { start: 8, end: 20 };

/**
 * The first half of a switch: whatever the new header reads that the current one does not — the
 * new name, and a backing-format extension's data with the end marker after it — written to bytes
 * the current header does not read, with no flush. The caller makes it durable (a flush of the
 * image's file, which a rebase shares with the data it copied in) before finishBackingSwitch.
 *
 * Nothing the current header reads moves: a backing-format extension that is missing is appended
 * after the others (QEMU puts it first, which shifts every extension after it and turns the switch
 * into a write over several sectors that a power cut can leave half-done), one no longer wanted
 * stays (without a backing file it means nothing; QEMU reads such a header and keeps it as it is,
 * though its own rebase -b "" rewrites the whole area), and one with another format changes in place. The old name, where the appended extension needs its bytes, moves first by a
 * one-sector switch of its offset.
 */
export function stageBackingName(image: Qcow2Image, name: string | null, format: 'qcow2' | 'raw' | null): StagedBackingName {
  image.prepareForWrite();
  const old = image.header;
  if (name === null) return { name, format, at: null, extensions: [...old.extensions], appendAt: null, formatInPlace: false };
  const wantedFormat = format === null ? null : encodeString(format);
  const existing = old.extensions.findIndex((extension) => extension.type === EXT_BACKING_FORMAT);
  let extensions = [...old.extensions];
  let appendAt: number | null = null;
  let formatInPlace = false;
  const markerAt = serializeHeaderArea({ ...old, backingFile: null }).length - 8;
  if (wantedFormat !== null && existing === -1) {
    appendAt = markerAt;
    extensions = [...extensions, { type: EXT_BACKING_FORMAT, data: wantedFormat }];
  } else if (wantedFormat !== null && alignUp(old.extensions[existing]?.data.length ?? 0, 8) !== alignUp(wantedFormat.length, 8)) {
    // Another length ('host_device', or none) would move every extension after it.
    return wholeArea(name, format, old);
  } else if (wantedFormat !== null) {
    formatInPlace = !bytesEqual(old.extensions[existing]?.data ?? new Uint8Array(0), wantedFormat);
    extensions = extensions.map((extension, index) => (index === existing ? { type: EXT_BACKING_FORMAT, data: wantedFormat } : extension));
  }
  const nameBytes = encodeString(name);
  // The area as the new header reads it ends here (an appended extension: 8 + 8 bytes and a new end marker).
  const areaEnd = appendAt === null ? markerAt + 8 : appendAt + 24;
  let oldName = old.backingFileOffset !== 0 ? { start: old.backingFileOffset, end: old.backingFileOffset + old.backingFileSize } : null;
  const free = (from: number): number => alignUp(Math.max(from, areaEnd, oldName?.end ?? 0), 8);
  if (appendAt !== null && oldName !== null && oldName.start < appendAt + 24 && oldName.end > appendAt + 8) {
    // The appended extension's bytes hold the old name: it moves out of the way first.
    const moved = free(0);
    if (moved + old.backingFileSize > image.clusterBytes) return wholeArea(name, format, old);
    const bytes = new Uint8Array(old.backingFileSize);
    image.file.read(bytes, old.backingFileOffset);
    image.file.write(bytes, moved);
    image.file.flush();
    const offset = new Uint8Array(8);
    writeU64Number(view(offset), 0, moved);
    image.file.write(offset, NAME_FIELDS.start);
    image.file.flush();
    old.backingFileOffset = moved;
    oldName = { start: moved, end: moved + old.backingFileSize };
  }
  // Right after the area where that leaves the old name alone, else after the old name: two
  // places a cluster's worth of switches take turns at, not one creeping towards the end.
  const first = alignUp(areaEnd, 8);
  const at = oldName === null || first + nameBytes.length <= oldName.start ? first : free(0);
  if (at + nameBytes.length > image.clusterBytes) return wholeArea(name, format, old);
  if (appendAt !== null) {
    const tail = new Uint8Array(16);
    tail.set(wantedFormat ?? new Uint8Array(0), 0);
    image.file.write(tail, appendAt + 8);
  }
  image.file.write(nameBytes, at);
  return { name, format, at, extensions, appendAt, formatInPlace };
}

/**
 * No room to stage in the header cluster: the whole area goes in one write at the switch, as
 * QEMU writes it (a power cut can tear it where it spans sectors; a kill cannot).
 */
function wholeArea(name: string, format: 'qcow2' | 'raw' | null, old: Header): StagedBackingName {
  return { name, format, at: null, extensions: withBackingFormat(old.extensions, format), appendAt: null, formatInPlace: false };
}

/**
 * The second half, once what was staged is durable: the header switches to it (built from the
 * header as it is now: a flush in between may have moved the refcount table) in writes of one
 * sector each, in an order where each leaves a header QEMU reads: first the name's offset and size
 * (with no backing format yet, QEMU and Cowbell probe the new file, a qcow2 one), then the appended
 * extension's type and length over the old end marker. Each write is flushed.
 */
export function finishBackingSwitch(image: Qcow2Image, staged: StagedBackingName): void {
  const old = image.header;
  const next: Header = { ...old, backingFile: staged.name, extensions: staged.extensions };
  // Sets next's backing file offset and size, as the whole area would have them.
  const area = serializeHeaderArea(next);
  if (staged.at === null && staged.name !== null) {
    writeChanged(image, area, 0, area.length);
  } else {
    if (staged.at !== null) {
      writeU64Number(view(area), 8, staged.at);
      next.backingFileOffset = staged.at;
    }
    // The fixed header and the extensions, as the new header reads them (the name is in place
    // already); only the bytes that differ from the file are written, a sector at a time, the name
    // fields' sector first.
    const head = area.subarray(0, serializeHeaderArea({ ...next, backingFile: null }).length);
    // A format changed in place, or a raw file named, goes in one write (as QEMU writes the whole
    // area): between sectors the header would name the new file in the old format, or in none,
    // and a probe can take a raw file's guest bytes for a qcow2 header (a power cut can still
    // tear that write, as QEMU's; a kill cannot). Else a sector at a time: a qcow2 file probes as one.
    if (staged.formatInPlace || staged.format === 'raw') writeChanged(image, head, 0, head.length);
    writeChanged(image, head, 0, SECTOR);
    for (let sector = SECTOR; sector < head.length; sector += SECTOR) writeChanged(image, head, sector, sector + SECTOR);
  }
  Object.assign(old, { backingFile: next.backingFile, backingFileOffset: next.backingFileOffset, backingFileSize: next.backingFileSize, extensions: next.extensions });
}

/** Writes the bytes of [from, to) of `wanted` that differ from the file (one write, from the first to the last that differs), and flushes. */
function writeChanged(image: Qcow2Image, wanted: Uint8Array, from: number, to: number): void {
  const end = Math.min(to, wanted.length);
  if (end <= from) return;
  const current = new Uint8Array(end - from);
  const read = image.file.read(current, from);
  current.fill(0, read);
  let first = from;
  while (first < end && wanted[first] === current[first - from]) first++;
  let last = end;
  while (last > first && wanted[last - 1] === current[last - 1 - from]) last--;
  if (last <= first) return;
  image.file.write(wanted.subarray(first, last), first);
  image.file.flush();
}

/** The extensions with the backing format set (where it was, or first, as QEMU writes it) or removed. */
function withBackingFormat(extensions: readonly HeaderExtension[], format: string | null): HeaderExtension[] {
  const data = format === null ? null : encodeString(format);
  const index = extensions.findIndex((extension) => extension.type === EXT_BACKING_FORMAT);
  if (data === null) return extensions.filter((extension) => extension.type !== EXT_BACKING_FORMAT);
  const replaced = { type: EXT_BACKING_FORMAT, data };
  if (index === -1) return [replaced, ...extensions];
  return extensions.map((extension, position) => (position === index ? replaced : extension));
}

export function assertBackingName(name: string): void {
  if (encodeString(name).length > 1023) throw new Qcow2Error('INVALID_ARGUMENT', 'The backing file name is too long (1023 bytes at most)');
}
