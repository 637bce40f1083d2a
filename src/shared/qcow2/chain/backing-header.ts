/**
 * Changing the backing file an image names (rebase; `-u` does nothing else). The name lives in
 * the header cluster after the extensions, and its offset and length in the fixed header, so a
 * change made in place could, cut short, pair the new length with the old name's bytes. Instead the
 * new name goes first to bytes the current header does not use, durably, and then one write
 * switches the fixed header (and the backing-format extension) to it.
 */
import { Qcow2Error } from '../errors.ts';
import { encodeString, EXT_BACKING_FORMAT, serializeHeaderArea, type Header, type HeaderExtension } from '../format/header.ts';
import { alignUp, view, writeU64Number } from '../format/bytes.ts';
import type { Qcow2Image } from '../image/image.ts';

export function switchBackingFile(image: Qcow2Image, name: string | null, format: 'qcow2' | 'raw' | null): void {
  image.prepareForWrite();
  const old = image.header;
  const next: Header = { ...old, backingFile: name, extensions: withBackingFormat(old.extensions, name === null ? null : format) };
  const area = serializeHeaderArea(next);
  const clusterBytes = image.clusterBytes;
  const natural = name === null ? area.length : next.backingFileOffset;
  const nameBytes = name === null ? new Uint8Array(0) : encodeString(name);
  const current = new Uint8Array(Math.min(clusterBytes, image.file.size()));
  image.file.read(current, 0);

  let head = area;
  if (name !== null) {
    const oldAreaEnd = serializeHeaderArea({ ...old, backingFile: null }).length;
    const oldName = old.backingFileOffset !== 0 ? { start: old.backingFileOffset, end: old.backingFileOffset + old.backingFileSize } : null;
    let at = alignUp(Math.max(natural, oldAreaEnd), 8);
    if (oldName !== null && at < oldName.end && at + nameBytes.length > oldName.start) at = alignUp(oldName.end, 8);
    if (at + nameBytes.length <= clusterBytes) {
      image.file.write(nameBytes, at);
      image.file.flush();
      head = area.slice(0, natural);
      writeU64Number(view(head), 8, at);
      next.backingFileOffset = at;
    }
    // Otherwise no free room in the cluster: the whole area goes in one write, as QEMU writes it.
  }
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
