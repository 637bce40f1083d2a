/**
 * Changing the backing file an image names (rebase; `-u` does nothing else). The name lives in
 * the header cluster after the extensions, and its offset and length in the fixed header, so a
 * change made in place could, cut short, pair the new length with the old name's bytes. Instead the
 * new name goes first to bytes the current header does not use, durably, and then one write
 * switches the fixed header (and the backing-format extension) to it. A caller with a flush of its
 * own to make before the switch stages the name first and lets that flush carry it.
 */
import { Qcow2Error } from '../errors.ts';
import { encodeString, EXT_BACKING_FORMAT, serializeHeaderArea, type Header, type HeaderExtension } from '../format/header.ts';
import { alignUp, view, writeU64Number } from '../format/bytes.ts';
import type { Qcow2Image } from '../image/image.ts';

export function switchBackingFile(image: Qcow2Image, name: string | null, format: 'qcow2' | 'raw' | null): void {
  const staged = stageBackingName(image, name, format);
  image.file.flush();
  finishBackingSwitch(image, staged);
}

/** A switch under way: the new name and format, and where the name was written ahead of the header (null: nowhere). */
export interface StagedBackingName {
  readonly name: string | null;
  readonly format: 'qcow2' | 'raw' | null;
  readonly at: number | null;
}

/** The header as it will be: the new name and backing format, placed where QEMU would place them. */
function nextHeader(header: Header, staged: Pick<StagedBackingName, 'name' | 'format'>): { next: Header; area: Uint8Array } {
  const next: Header = { ...header, backingFile: staged.name, extensions: withBackingFormat(header.extensions, staged.name === null ? null : staged.format) };
  // Sets next's backing file offset and size.
  const area = serializeHeaderArea(next);
  return { next, area };
}

/**
 * The first half of a switch: the new name written to bytes the current header does not use (no
 * reader looks there), with no flush. The caller makes it durable — a flush of the image's file,
 * which a rebase shares with the data it copied in — before finishBackingSwitch.
 */
export function stageBackingName(image: Qcow2Image, name: string | null, format: 'qcow2' | 'raw' | null): StagedBackingName {
  image.prepareForWrite();
  if (name === null) return { name, format, at: null };
  const old = image.header;
  const { next } = nextHeader(old, { name, format });
  const nameBytes = encodeString(name);
  const oldAreaEnd = serializeHeaderArea({ ...old, backingFile: null }).length;
  const oldName = old.backingFileOffset !== 0 ? { start: old.backingFileOffset, end: old.backingFileOffset + old.backingFileSize } : null;
  let at = alignUp(Math.max(next.backingFileOffset, oldAreaEnd), 8);
  if (oldName !== null && at < oldName.end && at + nameBytes.length > oldName.start) at = alignUp(oldName.end, 8);
  // No free room in the cluster: the whole area goes in one write at the switch, as QEMU writes it.
  if (at + nameBytes.length > image.clusterBytes) return { name, format, at: null };
  image.file.write(nameBytes, at);
  return { name, format, at };
}

/**
 * The second half, once the staged name is durable: one write switches the header to it (built from
 * the header as it is now: a flush in between may have moved the refcount table), then a flush.
 */
export function finishBackingSwitch(image: Qcow2Image, staged: StagedBackingName): void {
  const old = image.header;
  const { next, area } = nextHeader(old, staged);
  let head = area;
  if (staged.at !== null) {
    head = area.slice(0, next.backingFileOffset);
    writeU64Number(view(head), 8, staged.at);
    next.backingFileOffset = staged.at;
  }
  const current = new Uint8Array(Math.min(image.clusterBytes, image.file.size()));
  image.file.read(current, 0);
  // Only up to the last byte that changes, so that the usual switch is one sector.
  let end = head.length;
  while (end > 0 && head[end - 1] === current[end - 1]) end--;
  if (end > 0) image.file.write(head.subarray(0, end), 0);
  image.file.flush();
  Object.assign(old, { backingFile: next.backingFile, backingFileOffset: next.backingFileOffset, backingFileSize: next.backingFileSize, extensions: next.extensions });
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
