/**
 * `qemu-img map --output=json`: the guest disk as runs of (depth, present, zero, data, compressed,
 * offset), walking the backing chain where a layer is unallocated. Computed from the mapping
 * tables (and the file system's holes, below). The rules are qemu-img's (qemu-img.c get_block_status, entry_mergeable and
 * block/io.c bdrv_co_block_status):
 *  - a layer's unallocated range descends to its backing file, one depth further; where there is
 *    no backing file, or the range lies past the backing file's end, it reads as zeros at the
 *    layer's own depth (present false, zero true);
 *  - adjacent runs merge when every flag and the depth agree and their host offsets are contiguous.
 * A file's holes are zeros, as its file system reports them (file-extents.ts), as qemu-img's are
 * (its block status asks the file below): a raw backing file's, and in a qcow2 layer that looks
 * preallocated with metadata (metadata-preallocation.ts) the host ranges of its data clusters, which
 * stay data with their offset but read as zeros (zero and data both true).
 */
import { alignUp } from '../format/bytes.ts';
import type { GuestReader } from './guest-reader.ts';
import { Qcow2Image, Qcow2StateView, type L1Table } from './image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { visitLayerRuns } from './layer-runs.ts';
import type { MapEntry } from '../model.ts';
import { RawImage } from './raw-image.ts';
import { Qcow2Error } from '../errors.ts';
import { descriptorOf } from '../io/fail-stop-file.ts';
import { looksMetadataPreallocated } from './metadata-preallocation.ts';
import { fileExtents } from '../io/file-extents.ts';

/** Guest bytes walked between cancel checks and progress reports. */
const STEP_BYTES = 16 * 1024 * 1024 * 1024;

/** Collects runs in guest order, merging each with the previous one as qemu-img does. */
export class MapBuilder {
  readonly entries: MapEntry[] = [];

  add(entry: MapEntry): void {
    if (entry.length <= 0) return;
    const last = this.entries[this.entries.length - 1];
    if (last !== undefined && mergeable(last, entry)) last.length += entry.length;
    else this.entries.push(entry);
  }
}

function mergeable(current: MapEntry, next: MapEntry): boolean {
  if (current.depth !== next.depth || current.present !== next.present || current.zero !== next.zero) return false;
  if (current.data !== next.data || current.compressed !== next.compressed) return false;
  if ((current.offset === undefined) !== (next.offset === undefined)) return false;
  return current.offset === undefined || current.offset + current.length === next.offset;
}

/** Every run of the image's guest disk, as `qemu-img map --output=json` lists them. */
export function mapImage(image: Qcow2Image, job: JobContext = silentJob): MapEntry[] {
  const builder = new MapBuilder();
  const size = image.virtualSize;
  for (let start = 0; start < size; start += STEP_BYTES) {
    job.throwIfCancelled();
    job.progress('mapping', start, size, 'bytes');
    mapLayer(image, 0, start, Math.min(size, start + STEP_BYTES), builder);
  }
  job.progress('mapping', size, size, 'bytes');
  return builder.entries;
}

/** The runs of guest bytes [start, end) only (clipped to the disk), merged the same way; of a snapshot's state when given its view. */
export function mapRange(source: Qcow2Image | Qcow2StateView, start: number, end: number): MapEntry[] {
  const builder = new MapBuilder();
  const image = source instanceof Qcow2StateView ? source.image : source;
  const l1 = source instanceof Qcow2StateView ? source.l1 : image.l1;
  mapLayer(image, 0, start, Math.min(end, source.virtualSize), builder, l1);
  return builder.entries;
}

/** The length QEMU gives a backing file: a raw file counts in whole 512-byte sectors. */
export function layerLength(reader: GuestReader): number {
  return reader instanceof RawImage ? alignUp(reader.virtualSize, 512) : reader.virtualSize;
}

function mapLayer(reader: GuestReader, depth: number, start: number, end: number, builder: MapBuilder, l1?: L1Table): void {
  if (start >= end) return;
  if (reader instanceof RawImage) {
    // The file system's holes (and the tail of the last sector, past the end of the file) read as zeros.
    for (const extent of reader.extents(start, end)) {
      builder.add({ start: extent.start, length: extent.length, depth, present: true, zero: !extent.data, data: extent.data, compressed: false, offset: extent.start });
    }
    return;
  }
  if (!(reader instanceof Qcow2Image)) throw new Qcow2Error('INTERNAL', 'cannot map a backing file of an unknown kind');
  const image = reader;
  // QEMU reports no host offsets for encrypted images (the host bytes are not the guest's).
  const encrypted = image.header.cryptMethod !== 0;
  const holes = encrypted ? null : hostHoles(image, depth, builder);
  visitLayerRuns(image, l1 ?? image.l1, start, end, (guestOffset, length, kind, visitedOffset) => {
    const hostOffset = encrypted ? -1 : visitedOffset;
    if (kind === 'data' && hostOffset >= 0 && holes !== null) {
      holes.add(guestOffset, length, hostOffset);
      return;
    }
    holes?.flush();
    if (kind !== 'unallocated') {
      const entry: MapEntry = { start: guestOffset, length, depth, present: true, zero: kind === 'zero', data: kind !== 'zero', compressed: kind === 'compressed' };
      if (hostOffset >= 0) entry.offset = hostOffset;
      builder.add(entry);
      return;
    }
    const runEnd = guestOffset + length;
    const backing = image.backing;
    const backingEnd = backing === null ? guestOffset : Math.max(guestOffset, Math.min(runEnd, layerLength(backing)));
    if (backing !== null) mapLayer(backing, depth + 1, guestOffset, backingEnd, builder);
    if (backingEnd < runEnd) {
      const entry: MapEntry = { start: backingEnd, length: runEnd - backingEnd, depth, present: false, zero: true, data: false, compressed: false };
      if (hostOffset >= 0) entry.offset = hostOffset + (backingEnd - guestOffset);
      builder.add(entry);
    }
  });
  holes?.flush();
}

/**
 * Gathers a layer's data runs that follow each other in the guest and in the file, then adds each
 * split where the file has holes: one question to the file system per run, not per cluster. Null
 * where the file cannot be asked (no descriptor).
 */
function hostHoles(image: Qcow2Image, depth: number, builder: MapBuilder): { add(guestOffset: number, length: number, hostOffset: number): void; flush(): void } | null {
  // QEMU asks only where the image looks preallocated, and then the image file (not an external data file).
  if (image.dataFile !== null || !looksMetadataPreallocated(image)) return null;
  const descriptor = descriptorOf(image.file);
  if (descriptor === null) return null;
  let pending: { start: number; length: number; offset: number } | null = null;
  const flush = (): void => {
    if (pending === null) return;
    const { start, offset } = pending;
    for (const extent of fileExtents(descriptor, offset, offset + pending.length)) {
      builder.add({ start: start + (extent.start - offset), length: extent.length, depth, present: true, zero: !extent.data, data: true, compressed: false, offset: extent.start });
    }
    pending = null;
  };
  return {
    add(guestOffset, length, hostOffset) {
      if (pending !== null && pending.start + pending.length === guestOffset && pending.offset + pending.length === hostOffset) {
        pending.length += length;
        return;
      }
      flush();
      pending = { start: guestOffset, length, offset: hostOffset };
    },
    flush,
  };
}
