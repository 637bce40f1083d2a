/**
 * Resizing a disk in place, as `qemu-img resize` does, with every step in an order a crash cannot
 * turn into corruption (the dirty bit is set meanwhile on v3, see snapshots.ts `change`):
 *  - grow: whatever the active tables still map past the old end (a loaded snapshot's VM state)
 *    goes first, as a shrink drops it; when the new size needs more L1 entries, a larger active L1 is written elsewhere (its
 *    refcount durable first), one header write switches the L1 and the size together, and the old
 *    L1 is freed after; otherwise the size alone changes, in one header write;
 *  - shrink: the header's size drops first (the data past the end is out of the guest's reach
 *    from then on), then the pointers past the end go from the active L2 and L1 tables (a last
 *    cluster cut by the end is copied with its part past the end zeroed), and only then the
 *    refcounts of what they held drop; last, the file gives back the free clusters at its end.
 *    At worst a crash leaks clusters.
 * Snapshots keep their own disk size (v3's disk_size field) and all their data. Unlike qemu-img,
 * a shrink that would drop data the current disk holds past its new end is refused (DATA_PAST_END)
 * unless the caller chose to discard it.
 */
import { Qcow2Error } from '../errors.ts';
import { l1Checksum, readCowbellRecord, withCowbellRecord } from '../format/cowbell-record.ts';
import { view } from '../format/bytes.ts';
import { decodeL2, encodeL2, type L2Entry } from '../format/entries.ts';
import { MAX_L1_BYTES, MAX_VIRTUAL_SIZE, SECTOR } from '../format/limits.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import { truncateFreeEnd } from '../image/free-end.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { Qcow2Image, type L1Table, type OpenImageOptions } from '../image/image.ts';
import { visitLayerRuns } from '../image/layer-runs.ts';
import { imageFileHoles } from '../image/file-holes.ts';
import { withinHole, type HoleList } from '../io/hole-aware-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { DataPastEnd, ResizePreview, ResizeResult } from '../model.ts';
import { withImage } from './operations.ts';
import { change, l1Clusters, switchSnapshotTable, writeNewClusters } from './snapshots.ts';

export interface ResizeOptions {
  /** A smaller size is refused without it (qemu-img's --shrink). */
  shrink?: boolean;
  /** Let a shrink drop the current disk's data past the new end (refused otherwise). */
  discardData?: boolean;
  /**
   * With discardData: the most bytes of it the caller agreed to drop (what a dialog showed). More
   * is refused — another program wrote past the new end since — rather than dropped unseen.
   */
  discardUpTo?: number;
}

/** L1 entries a disk of `size` bytes needs. */
export function l1EntriesFor(image: Qcow2Image, size: number): number {
  return Math.ceil(size / (image.l2Entries * image.clusterBytes));
}

/** What resizing to `newSize` would do, with the data each state holds past a smaller end. */
export function previewResize(image: Qcow2Image, newSize: number, job: JobContext = silentJob): ResizePreview {
  assertResizable(image, newSize);
  const currentSize = image.virtualSize;
  const direction = newSize > currentSize ? 'grow' : newSize < currentSize ? 'shrink' : 'same';
  return {
    currentSize,
    newSize,
    direction,
    l1Grows: l1EntriesFor(image, newSize) > image.l1.size,
    pastEnd: direction === 'shrink' ? dataPastEnd(image, newSize, job) : [],
  };
}

export function resizeImage(image: Qcow2Image, newSize: number, options: ResizeOptions = {}, job: JobContext = silentJob): ResizeResult {
  image.assertWritable();
  const preview = previewResize(image, newSize, job);
  if (preview.direction !== 'same') image.validateForChange();
  const result: ResizeResult = { previousSize: preview.currentSize, newSize, l1Grown: false, discardedBytes: 0 };
  if (preview.direction === 'same') return result;
  if (preview.direction === 'grow') {
    result.l1Grown = preview.l1Grows;
    // Read before anything is written: an encrypted disk still locked fails here, unchanged.
    const tail = tailPast(image, preview.currentSize);
    resizeDataFile(image, newSize, 'grow');
    change(image, () => grow(image, newSize, tail, job));
    return result;
  }
  if (options.shrink !== true) {
    throw new Qcow2Error('INVALID_ARGUMENT', `Shrinking the disk from ${preview.currentSize} to ${newSize} bytes needs --shrink (as qemu-img asks): shrink the partition and file system inside the guest first`);
  }
  const current = preview.pastEnd.find((entry) => entry.state === 'current');
  if (current !== undefined && options.discardData !== true) throw dataPastEndError(preview);
  if (current !== undefined && options.discardUpTo !== undefined && current.bytes > options.discardUpTo) {
    throw new Qcow2Error('DATA_PAST_END', `The current disk now holds ${current.bytes} bytes past the new end, more than the ${options.discardUpTo} agreed to be discarded (another program wrote there since); nothing was changed, look again`);
  }
  result.discardedBytes = current?.bytes ?? 0;
  const tail = tailPast(image, newSize);
  change(image, () => shrink(image, newSize, tail, job));
  resizeDataFile(image, newSize, 'shrink');
  return result;
}

/**
 * An external data file holds guest cluster N at offset N (raw or not), so it follows the disk's
 * size as qemu-img 7.2 makes it: longer before the header grows, shorter once the header has shrunk.
 */
function resizeDataFile(image: Qcow2Image, newSize: number, direction: 'grow' | 'shrink'): void {
  const dataFile = image.dataFile;
  if (dataFile === null) return;
  const size = dataFile.size();
  if (direction === 'grow' ? size >= newSize : size <= newSize) return;
  dataFile.truncate(newSize);
  dataFile.flush();
}

/**
 * The checks qemu-img makes before a resize, and the limits the format sets: each refusal is
 * INVALID_ARGUMENT (this size cannot be had on this disk), not a feature Cowbell lacks.
 */
function assertResizable(image: Qcow2Image, newSize: number): void {
  if (!Number.isSafeInteger(newSize) || newSize <= 0) throw new Qcow2Error('INVALID_ARGUMENT', `The new size must be a positive number of bytes (not ${newSize})`);
  if (newSize % SECTOR !== 0) throw new Qcow2Error('INVALID_ARGUMENT', `The new size must be a multiple of ${SECTOR} bytes (${newSize} is not)`);
  if (newSize > MAX_VIRTUAL_SIZE || l1EntriesFor(image, newSize) * 8 > MAX_L1_BYTES) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${newSize} bytes is larger than a qcow2 disk with ${image.clusterBytes}-byte clusters can be`);
  }
  if (newSize === image.virtualSize) return;
  // A v2 snapshot table has no disk size per snapshot: each would silently take the new size.
  if (image.version === 2 && image.snapshots.length > 0) {
    throw new Qcow2Error('INVALID_ARGUMENT', "A compat 0.10 (qcow2 v2) disk with snapshots cannot be resized: its snapshots do not record their own disk size, so they would change size too (qemu-img refuses as well). Upgrade it to compat 1.1 first (Compact…, or `cowbell compact -o compat=1.1`, every snapshot kept): each snapshot then keeps its own size");
  }
  const sizeless = image.snapshots.find((entry) => entry.diskSize === null);
  if (sizeless !== undefined) {
    throw new Qcow2Error('INVALID_ARGUMENT', `Snapshot "${sizeless.name}" does not record its own disk size, so resizing would change it too; nothing was changed`);
  }
  if (image.version === 2 && backingShownPast(image, newSize) !== null) {
    throw new Qcow2Error('INVALID_ARGUMENT', "Growing this compat 0.10 (qcow2 v2) disk would show its backing file's data past the old end (the backing file is larger), and v2 has no zero clusters to hide it; nothing was changed. Upgrade it to compat 1.1 first (Compact…, or `cowbell compact -o compat=1.1`)");
  }
}

/**
 * The whole clusters past the old end through which a grow to `newSize` would show the backing
 * file (when it is larger than the disk): they must read as zeros, as QEMU makes them. Null when none.
 */
function backingShownPast(image: Qcow2Image, newSize: number): { start: number; end: number } | null {
  const backingSize = image.backing?.virtualSize ?? 0;
  const start = Math.ceil(image.virtualSize / image.clusterBytes) * image.clusterBytes;
  const end = Math.min(newSize, backingSize);
  return end > start ? { start, end } : null;
}

// ------------------------------------------------------------------ growing

function grow(image: Qcow2Image, newSize: number, tail: Uint8Array | null, job: JobContext): void {
  job.progress('clearing the old end', 0, 3, 'steps');
  if (tail !== null) clearPast(image, image.virtualSize, tail);
  // What the active tables still map past the old end goes too, before the guest can reach it: a
  // snapshot loaded by QEMU (loadvm) or applied (qemu-img snapshot -a, Cowbell's apply) brings
  // its whole L1 along, VM state included — the grown space showed that saved RAM as disk data.
  const released = releasePast(image, image.virtualSize);
  if (tail !== null || released) image.flush();
  if (released) image.rebuildMetadataClusters();
  const shown = backingShownPast(image, newSize);
  if (shown !== null) {
    // Zero clusters over the backing file first, past the old end where the guest cannot see them
    // yet (after a larger L1, switched to alone); then the size.
    if (l1EntriesFor(image, newSize) > image.l1.size) growL1(image, newSize, image.virtualSize, job);
    job.progress('hiding the backing file past the old end', 2, 3, 'steps');
    zeroClusters(image, shown.start, shown.end);
    image.flush();
    writeSize(image, newSize, job);
    return;
  }
  if (l1EntriesFor(image, newSize) <= image.l1.size) {
    writeSize(image, newSize, job);
    return;
  }
  growL1(image, newSize, newSize, job);
}

function writeSize(image: Qcow2Image, newSize: number, job: JobContext): void {
  job.progress('writing the new size', 2, 3, 'steps');
  image.header.virtualSize = newSize;
  image.writeHeader();
  image.file.flush();
  job.progress('done', 3, 3, 'steps');
}

/** v3 zero clusters over [start, end) of the active tables (whole clusters; the end may be the disk's). */
function zeroClusters(image: Qcow2Image, start: number, end: number): void {
  for (let clusterStart = start; clusterStart < end; clusterStart += image.clusterBytes) {
    const slot = image.writableL2Slot(clusterStart);
    const previous = decodeL2(slot.table.view, slot.position, image.l2Format);
    encodeL2(slot.table.view, slot.position, image.l2Format, { hostOffset: 0, copied: false, zero: true, allocMask: 0, zeroMask: 0xffffffff });
    slot.table.dirty = true;
    image.releaseEntry(previous);
  }
}

/** Moves the active L1 to a larger one for `newSize`, with the header's size set to `sizeAfter` in the same write. */
function growL1(image: Qcow2Image, newSize: number, sizeAfter: number, job: JobContext): void {
  const newL1Size = l1EntriesFor(image, newSize);
  // 1. The larger L1 elsewhere, its refcount durable before anything names it.
  job.progress('writing a larger L1 table', 1, 3, 'steps');
  const oldL1 = image.l1;
  const bytes = new Uint8Array(newL1Size * 8);
  bytes.set(oldL1.bytes);
  const newL1: L1Table = { offset: 0, size: newL1Size, bytes, view: view(bytes) };
  newL1.offset = writeNewClusters(image, bytes);
  image.flush();
  // 2. One header write switches the L1 and the size (with the snapshot table, when Cowbell's
  //    current-parent mark names the L1 it moves).
  job.progress('switching to the new L1 table', 2, 3, 'steps');
  const switchHeader = (): void => {
    image.header.l1TableOffset = newL1.offset;
    image.header.l1Size = newL1Size;
    image.header.virtualSize = sizeAfter;
  };
  const entries = withMovedCurrentMark(image, oldL1, newL1);
  if (entries !== null) switchSnapshotTable(image, entries, switchHeader);
  else {
    switchHeader();
    image.writeHeader();
    image.file.flush();
  }
  image.replaceActiveL1(newL1);
  // 3. Nothing names the old L1 any more: free it.
  if (oldL1.size > 0) for (const cluster of l1Clusters(image, oldL1.offset, oldL1.size)) image.refcounts.decrementLater(cluster);
  image.flush();
  image.rebuildMetadataClusters();
  if (sizeAfter === newSize) job.progress('done', 3, 3, 'steps');
}

/**
 * A size that is not a whole number of clusters leaves a last cluster part beyond the end. What it
 * holds there must read as zeros should the disk grow over it again — by Cowbell or by qemu-img,
 * which does not clear it: left by a shrink, or shown by a backing file. Returns the cluster's
 * content with that part zeroed, or null when it reads as zeros already. Reads the data: an
 * encrypted disk still locked fails here, before anything is written.
 */
function tailPast(image: Qcow2Image, size: number): Uint8Array | null {
  const inCluster = size % image.clusterBytes;
  if (inCluster === 0) return null;
  const clusterStart = size - inCluster;
  const entry = image.lookup(image.l1, clusterStart);
  const showsBacking = image.backing !== null && image.backing.virtualSize > size;
  // No entry (no L2 table there) is unallocated too: it shows the backing file as much as an empty entry does.
  const unallocated = entry === null || (entry.kind === 'unallocated' && entry.allocMask === 0);
  if (entry?.kind === 'zero' || (unallocated && !showsBacking)) return null;
  const content = new Uint8Array(image.clusterBytes);
  image.readThrough(image.l1, content, clusterStart, Number.MAX_SAFE_INTEGER);
  if (content.subarray(inCluster).every((byte) => byte === 0)) return null;
  content.fill(0, inCluster);
  return content;
}

/** The cluster holding `size` copied with `content` (its part past `size` zeroed): the guest sees the same bytes either way. */
function clearPast(image: Qcow2Image, size: number, content: Uint8Array): void {
  const clusterStart = size - (size % image.clusterBytes);
  const slot = image.writableL2Slot(clusterStart);
  const previous = decodeL2(slot.table.view, slot.position, image.l2Format);
  // An external data file holds each guest cluster at its own offset (no refcounts there): in place.
  const hostOffset = image.externalData ? clusterStart : image.refcounts.allocate(1);
  image.writeData(hostOffset, clusterStart, content);
  image.setL2Normal(slot, hostOffset);
  image.releaseEntry(previous);
}

/**
 * The snapshot table with Cowbell's current-parent mark following the active L1 to its new place
 * (the tree knows the current state's parent by that offset), or null when no mark names it.
 */
function withMovedCurrentMark(image: Qcow2Image, oldL1: L1Table, newL1: L1Table): SnapshotEntry[] | null {
  let moved = false;
  const entries = image.snapshots.map((entry) => {
    const record = readCowbellRecord(entry);
    if (record?.currentParent !== true || record.activeL1Offset !== oldL1.offset) return entry;
    moved = true;
    // The checksum says "nothing written since the mark": it stays true only if it was.
    const unchanged = record.activeL1Checksum !== undefined && record.activeL1Checksum === l1Checksum(oldL1.bytes);
    const updated = { ...record, activeL1Offset: newL1.offset, activeL1Checksum: unchanged ? l1Checksum(newL1.bytes) : record.activeL1Checksum };
    return { ...entry, extraData: withCowbellRecord(entry, updated, entry.diskSize ?? image.virtualSize) };
  });
  return moved ? entries : null;
}

// ------------------------------------------------------------------ shrinking

function shrink(image: Qcow2Image, newSize: number, tail: Uint8Array | null, job: JobContext): void {
  // 1. The new size: from here the guest cannot reach what lies past it.
  job.progress('writing the new size', 0, 3, 'steps');
  image.header.virtualSize = newSize;
  image.writeHeader();
  image.file.flush();
  // The last cluster's part past the end is cleared too, so no later grow shows it again.
  if (tail !== null) clearPast(image, newSize, tail);
  // 2. The pointers past the end leave the active tables (a table shared with a snapshot is
  //    copied first, so the snapshot keeps all of its own); their refcounts drop in the flush,
  //    once the tables without them are on disk.
  job.progress('releasing the clusters past the end', 1, 3, 'steps');
  // Past the size write a cancel cannot bring the old size back: finish, so nothing is left dirty.
  releasePast(image, newSize);
  image.flush();
  image.rebuildMetadataClusters();
  // 3. As qemu-img does, the file gives back the free clusters at its end (their refcounts are 0 on disk by now).
  truncateFreeEnd(image);
  job.progress('done', 3, 3, 'steps');
}

/**
 * Drops from the active tables every pointer to whole clusters past `size` (the cluster `size`
 * cuts stays: clearPast's); their refcounts drop in the next flush, once the tables without them
 * are on disk. Returns whether anything was dropped.
 */
function releasePast(image: Qcow2Image, size: number): boolean {
  const keptClusters = Math.ceil(size / image.clusterBytes);
  const keptTables = Math.ceil(keptClusters / image.l2Entries);
  let released = false;
  for (let l1Index = Math.floor(keptClusters / image.l2Entries); l1Index < image.l1.size; l1Index++) {
    const l2Offset = image.l2OffsetAt(image.l1, l1Index);
    if (l2Offset === 0) continue;
    if (l1Index >= keptTables) {
      releaseTable(image, l1Index, l2Offset);
      released = true;
    } else if (releaseEntriesFrom(image, l1Index, keptClusters % image.l2Entries)) released = true;
  }
  return released;
}

/** Drops a whole L2 table from the active L1: one reference less to it and to all it names. */
function releaseTable(image: Qcow2Image, l1Index: number, l2Offset: number): void {
  const table = image.l2Cache.get(l2Offset);
  const entries: L2Entry[] = [];
  for (let slot = 0; slot < image.l2Entries; slot++) entries.push(decodeL2(table.view, slot * image.l2EntryBytes, image.l2Format));
  image.setL1Entry(l1Index, 0, false);
  for (const entry of entries) image.releaseEntry(entry);
  image.refcounts.decrementLater(l2Offset / image.clusterBytes);
}

/** Clears the entries from `firstSlot` on in the table an L1 entry keeps (copied first when shared); whether any was set. */
function releaseEntriesFrom(image: Qcow2Image, l1Index: number, firstSlot: number): boolean {
  const l2Offset = image.l2OffsetAt(image.l1, l1Index);
  const table = image.l2Cache.get(l2Offset);
  let released = false;
  for (let slot = firstSlot; slot < image.l2Entries; slot++) {
    const position = slot * image.l2EntryBytes;
    if (table.bytes.subarray(position, position + image.l2EntryBytes).every((byte) => byte === 0)) continue;
    released = true;
    const writable = image.writableL2Slot((l1Index * image.l2Entries + slot) * image.clusterBytes);
    const entry = decodeL2(writable.table.view, writable.position, image.l2Format);
    encodeL2(writable.table.view, writable.position, image.l2Format, { hostOffset: 0, copied: false, zero: false, allocMask: 0, zeroMask: 0 });
    writable.table.dirty = true;
    image.releaseEntry(entry);
  }
  return released;
}

// ------------------------------------------------------------------ data past the end

/** Every state (current, then each snapshot) with allocated data between `newSize` and its own end. */
function dataPastEnd(image: Qcow2Image, newSize: number, job: JobContext): DataPastEnd[] {
  const states: DataPastEnd[] = [];
  const holes = zeroHoles(image);
  // The current disk's own data there, and what it shows of its backing chain there: both are its
  // guest's data, gone from its view once the end moves below them.
  const current = allocatedBytesPast(image, image.l1, image.virtualSize, newSize, holes, job) + backingBytesPast(image, newSize, job);
  if (current > 0) states.push({ state: 'current', id: null, name: null, diskSize: image.virtualSize, bytes: current, kept: false });
  for (const snapshot of image.snapshots) {
    const diskSize = snapshot.diskSize ?? image.virtualSize;
    if (diskSize <= newSize) continue;
    const bytes = allocatedBytesPast(image, image.loadSnapshotL1(snapshot), diskSize, newSize, holes, job);
    if (bytes > 0) states.push({ state: 'snapshot', id: snapshot.id, name: snapshot.name, diskSize, bytes, kept: true });
  }
  return states;
}

/**
 * Holes of the disk's file: clusters mapped there read zeros, so no guest data lies in them (a disk
 * made with preallocation=metadata maps its whole size so). Null where they cannot be known, or
 * would not read as zeros (an encrypted disk decrypts them into noise; an external data file).
 */
function zeroHoles(image: Qcow2Image): HoleList | null {
  if (image.cipher !== null) return null;
  if (image.hasUnflushedChanges()) image.flush();
  return imageFileHoles(image);
}

/** Guest bytes in [newSize, stateSize) that `l1` maps to data of its own (not zeros, not a backing file, not a hole of the file). */
function allocatedBytesPast(image: Qcow2Image, l1: L1Table, stateSize: number, newSize: number, holes: HoleList | null, job: JobContext): number {
  let bytes = 0;
  const firstCluster = Math.floor(newSize / image.clusterBytes);
  const endCluster = Math.ceil(stateSize / image.clusterBytes);
  const unit = image.subclusterBytes;
  for (let l1Index = Math.floor(firstCluster / image.l2Entries); l1Index < l1.size && l1Index * image.l2Entries < endCluster; l1Index++) {
    if (l1Index % 64 === 0) job.throwIfCancelled();
    const l2Offset = image.l2OffsetAt(l1, l1Index);
    if (l2Offset === 0) continue;
    const table = image.l2Cache.get(l2Offset);
    const first = Math.max(firstCluster, l1Index * image.l2Entries);
    const end = Math.min(endCluster, (l1Index + 1) * image.l2Entries);
    for (let cluster = first; cluster < end; cluster++) {
      const entry = decodeL2(table.view, (cluster % image.l2Entries) * image.l2EntryBytes, image.l2Format);
      const clusterStart = cluster * image.clusterBytes;
      const overlap = (start: number, length: number): number => Math.max(0, Math.min(start + length, stateSize) - Math.max(start, newSize));
      const inHole = (hostStart: number, length: number): boolean => holes !== null && withinHole(holes, hostStart, hostStart + length);
      if (entry.kind === 'compressed') bytes += overlap(clusterStart, image.clusterBytes);
      else if (entry.kind === 'normal' && !image.l2Format.extendedL2) {
        if (!inHole(entry.hostOffset, image.clusterBytes)) bytes += overlap(clusterStart, image.clusterBytes);
      } else if (entry.kind === 'normal') {
        for (let sub = 0; sub < 32; sub++) if (((entry.allocMask >>> sub) & 1) === 1 && !inHole(entry.hostOffset + sub * unit, unit)) bytes += overlap(clusterStart + sub * unit, unit);
      }
    }
  }
  return bytes;
}

/**
 * Guest bytes in [newSize, the current end) that the current state reads from its backing chain
 * and that the chain holds as data: where it allocates nothing itself (no zero flag either).
 */
function backingBytesPast(image: Qcow2Image, newSize: number, job: JobContext): number {
  if (image.backing === null) return 0;
  let bytes = 0;
  visitLayerRuns(image, image.l1, newSize, image.virtualSize, (start, length, kind) => {
    if (kind === 'unallocated') bytes += chainDataBytes(image.backing, start, start + length, job);
  });
  return bytes;
}

/** Bytes of [start, end) that the chain `reader` holds as data (any layer's data; all of a raw file; none past a layer's end). */
function chainDataBytes(reader: GuestReader | null, start: number, end: number, job: JobContext): number {
  if (reader === null) return 0;
  const stop = Math.min(end, reader.virtualSize);
  if (stop <= start) return 0;
  if (!(reader instanceof Qcow2Image)) return stop - start;
  job.throwIfCancelled();
  let bytes = 0;
  visitLayerRuns(reader, reader.l1, start, stop, (runStart, length, kind) => {
    if (kind === 'data' || kind === 'compressed') bytes += length;
    else if (kind === 'unallocated') bytes += chainDataBytes(reader.backing, runStart, runStart + length, job);
  });
  return bytes;
}

function dataPastEndError(preview: ResizePreview): Qcow2Error {
  const describe = (entry: DataPastEnd): string =>
    entry.state === 'current' ? `the current disk holds ${entry.bytes} bytes there` : `snapshot "${entry.name ?? ''}" holds ${entry.bytes} bytes there (it keeps them)`;
  return new Qcow2Error(
    'DATA_PAST_END',
    `Shrinking to ${preview.newSize} bytes would drop data past the new end: ${preview.pastEnd.map(describe).join('; ')}. Shrink the file system inside the guest first, or pass --discard-data to drop it; nothing was changed`,
  );
}

// ------------------------------------------------------------------ by path

/** `passphrase` unlocks an encrypted disk; only growing from a size that is not a whole number of clusters needs it. */
export type ResizeOpenOptions = Pick<OpenImageOptions, 'passphrase' | 'refuseInUse' | 'trustLegacyPassphrase'>;

export function readResizePreview(filePath: string, newSize: number, job: JobContext = silentJob, options: ResizeOpenOptions = {}): ResizePreview {
  return withImage(filePath, 'read', (image) => previewResize(image, newSize, job), { ...options, openBacking: true });
}

export function resizeImagePath(filePath: string, newSize: number, resize: ResizeOptions = {}, job: JobContext = silentJob, options: ResizeOpenOptions = {}): ResizeResult {
  return withImage(filePath, 'write', (image) => resizeImage(image, newSize, resize, job), { ...options, openBacking: true });
}
