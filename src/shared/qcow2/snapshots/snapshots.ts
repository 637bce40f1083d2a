/**
 * Internal snapshots: create, apply (revert), delete, rename — with QEMU's refcount bookkeeping
 * and an order of writes that a crash cannot turn into corruption:
 *  - a COPIED flag never sits on a cluster whose refcount is above 1, not even between two
 *    flushes (it lets a writer — QEMU trusts the flag — change the snapshot in place): a
 *    snapshot's L1 copy carries none, and tables about to be shared lose theirs (create: the
 *    active ones; apply: the snapshot's) before any refcount rises;
 *  - apply writes the new active L1 elsewhere and switches to it with one header write, so the
 *    active state is the old or the new one, never a mix;
 *  - refcounts rise before anything new points to them, and drop only after the old pointers are
 *    gone from disk; at worst a crash leaks clusters.
 * On v3 images the dirty bit is set for the duration, so QEMU repairs refcounts if it opens the
 * image after a crash in the middle.
 */
import { Qcow2Error } from '../errors.ts';
import { alignUp, hex, view } from '../format/bytes.ts';
import { canHoldCowbellRecord, encodeSnapshotNote, l1Checksum, readCowbellRecord, withCowbellRecord, type CowbellRecord } from '../format/cowbell-record.ts';
import { decodeL1, decodeL2, encodeL1, encodeL2, standardL2HostOffset } from '../format/entries.ts';
import { INCOMPAT_DIRTY, MAX_L1_BYTES, MAX_VIRTUAL_SIZE } from '../format/limits.ts';
import { ClusterCounts } from '../image/cluster-counts.ts';
import { refuseWithExternalData } from '../image/data-file.ts';
import { newExtraData, serializeSnapshotTable, type SnapshotEntry } from '../format/snapshot-table.ts';
import { findSnapshot, type L1Table, type Qcow2Image, type SnapshotRef } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { currentParentId } from './snapshot-tree.ts';

function assertNewName(image: Qcow2Image, name: string): void {
  if (name.length === 0) throw new Qcow2Error('INVALID_ARGUMENT', 'A snapshot needs a name');
  if (name.includes('\0')) throw new Qcow2Error('INVALID_ARGUMENT', 'A snapshot name cannot contain a NUL character');
  if (image.snapshots.some((entry) => entry.name === name)) throw new Qcow2Error('SNAPSHOT_EXISTS', `A snapshot named "${name}" already exists`);
  // Names that read as something else where a snapshot is named (the command line's, the app's): another snapshot, or no snapshot at all.
  if (name === 'current') throw new Qcow2Error('INVALID_ARGUMENT', '"current" stands for the disk\'s current state where a snapshot is named; choose another name');
  if (/^snapshot\.(name|id)=/s.test(name)) throw new Qcow2Error('INVALID_ARGUMENT', `"${name}" reads as a reference to another snapshot (snapshot.name=… / snapshot.id=…); choose another name`);
  // The table stores a name's length in 16 bits (QEMU's own limit is far lower: 256 bytes in its monitor).
  if (new TextEncoder().encode(name).length > 0xffff) throw new Qcow2Error('INVALID_ARGUMENT', 'A snapshot name is too long (at most 65535 bytes)');
}

/** QEMU's rule for new ids: one more than the largest numeric id. */
function nextSnapshotId(image: Qcow2Image): string {
  let highest = 0;
  for (const entry of image.snapshots) {
    const value = Number.parseInt(entry.id, 10);
    if (Number.isSafeInteger(value) && value > highest) highest = value;
  }
  return String(highest + 1);
}

// ------------------------------------------------------------------ refcount walks over an L1

/** Visits every host cluster an L1 table reaches: its L2 tables and the data they name. */
export function forEachReference(image: Qcow2Image, l1: L1Table, visit: (clusterIndex: number) => void, job: JobContext = silentJob): void {
  for (let l1Index = 0; l1Index < l1.size; l1Index++) {
    const l2Offset = image.l2OffsetAt(l1, l1Index);
    if (l2Offset === 0) continue;
    if (l1Index % 64 === 0) job.throwIfCancelled();
    visit(l2Offset / image.clusterBytes);
    const table = image.l2Cache.get(l2Offset);
    for (let slot = 0; slot < image.l2Entries; slot++) {
      const hostOffset = standardL2HostOffset(table.view, slot * image.l2EntryBytes);
      if (hostOffset > 0) {
        // An unaligned offset would reach refcount arithmetic as a fractional cluster.
        if (hostOffset % image.clusterBytes !== 0) throw new Qcow2Error('CORRUPT', `The L2 table at ${hex(l2Offset)} names an unaligned host offset ${hex(hostOffset)}`);
        visit(hostOffset / image.clusterBytes);
      } else if (hostOffset < 0) {
        const entry = decodeL2(table.view, slot * image.l2EntryBytes, image.l2Format);
        const first = Math.floor(entry.hostOffset / image.clusterBytes);
        const last = Math.floor((entry.hostOffset + entry.compressedSize - 1) / image.clusterBytes);
        for (let cluster = first; cluster <= last; cluster++) visit(cluster);
      }
    }
  }
}

/**
 * The references a copy of `l1` adds, per host cluster; refused before anything is written when
 * one would not fit the image's refcount width (1-bit refcounts cannot share a cluster at all).
 */
function referencesToAdd(image: Qcow2Image, l1: L1Table, job: JobContext): ClusterCounts {
  const references = new ClusterCounts();
  forEachReference(image, l1, (cluster) => references.add(cluster, 1), job);
  references.forEach((cluster, count) => {
    if (image.refcounts.get(cluster) + count > image.refcounts.max) {
      throw new Qcow2Error(
        'INVALID_ARGUMENT',
        `This needs a refcount above ${image.refcounts.max}, the largest this image's ${2 ** image.refcounts.order}-bit refcounts can hold (cluster ${cluster}); nothing was changed`,
      );
    }
  });
  return references;
}

function addReferences(image: Qcow2Image, references: ClusterCounts): void {
  references.forEach((cluster, count) => image.refcounts.increment(cluster, count));
}

export function l1Clusters(image: Qcow2Image, offset: number, size: number): number[] {
  const clusters: number[] = [];
  const count = Math.ceil((size * 8) / image.clusterBytes);
  for (let index = 0; index < count; index++) clusters.push(offset / image.clusterBytes + index);
  return clusters;
}

/** A copy of an L1 table without COPIED flags, `size` entries long (zero-padded). */
function strippedL1Copy(source: L1Table, size: number): Uint8Array {
  const bytes = new Uint8Array(size * 8);
  bytes.set(source.bytes.subarray(0, Math.min(source.bytes.length, bytes.length)));
  const data = view(bytes);
  for (let index = 0; index < size; index++) data.setUint32(index * 8, data.getUint32(index * 8) & 0x7fffffff);
  return bytes;
}

/** Allocates clusters for `bytes` (cluster-padded) and writes them; the refcount is raised first (in memory). */
export function writeNewClusters(image: Qcow2Image, bytes: Uint8Array): number {
  if (bytes.length === 0) return 0;
  const padded = new Uint8Array(alignUp(bytes.length, image.clusterBytes));
  padded.set(bytes);
  const clusters = padded.length / image.clusterBytes;
  const offset = image.refcounts.allocate(clusters);
  for (let index = 0; index < clusters; index++) image.metadataClusters.add(offset / image.clusterBytes + index);
  image.file.write(padded, offset);
  return offset;
}

// ------------------------------------------------------------------ multi-step changes

function beginChange(image: Qcow2Image): void {
  image.prepareForWrite();
  image.flush();
  if (image.version === 3) {
    image.header.incompatibleFeatures |= INCOMPAT_DIRTY;
    image.writeHeader();
    image.file.flush();
  }
}

function endChange(image: Qcow2Image): void {
  image.flush();
  if (image.version === 3 && (image.header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n) {
    image.header.incompatibleFeatures &= ~INCOMPAT_DIRTY;
    image.writeHeader();
    image.file.flush();
  }
}

/** Runs a multi-step change; on failure the image is left for check --repair (leaks at worst). */
export function change<T>(image: Qcow2Image, work: () => T): T {
  beginChange(image);
  const result = work();
  endChange(image);
  return result;
}

/**
 * Writes `entries` as a new snapshot table and switches the header to it in one write (with
 * `headerUpdate` applied to the same write), then frees the old table.
 */
export function switchSnapshotTable(image: Qcow2Image, entries: SnapshotEntry[], headerUpdate: () => void = () => {}): void {
  const bytes = serializeSnapshotTable(entries);
  const oldOffset = image.header.snapshotsOffset;
  const oldLength = image.header.snapshotCount > 0 ? image.snapshotTableBytes : 0;
  const newOffset = entries.length > 0 ? writeNewClusters(image, bytes) : 0;
  image.flush();
  image.header.snapshotsOffset = newOffset;
  image.header.snapshotCount = entries.length;
  headerUpdate();
  image.writeHeader();
  image.file.flush();
  image.snapshots = entries;
  image.snapshotTableBytes = bytes.length;
  if (oldLength > 0) {
    const first = oldOffset / image.clusterBytes;
    const count = Math.ceil(oldLength / image.clusterBytes);
    for (let index = 0; index < count; index++) image.refcounts.decrementLater(first + index);
  }
}

// ------------------------------------------------------------------ the tree records

function recordOf(entry: SnapshotEntry): CowbellRecord | null {
  return readCowbellRecord(entry);
}

/** A copy of `entry` whose Cowbell record has `update` applied (if its extra data can hold one). */
function withRecord(image: Qcow2Image, entry: SnapshotEntry, update: Partial<CowbellRecord>): SnapshotEntry {
  if (!canHoldCowbellRecord(entry)) return entry;
  const current = recordOf(entry) ?? { parentKnown: false, parentId: '', currentParent: false, activeL1Offset: 0, currentSinceSec: 0, currentSinceNsec: 0 };
  const record = { ...current, ...update };
  const copy = { ...entry };
  copy.extraData = withCowbellRecord(entry, record, image.virtualSize);
  if (copy.vmStateSizeLarge === null) copy.vmStateSizeLarge = BigInt(entry.vmStateSize32);
  if (copy.diskSize === null) copy.diskSize = image.virtualSize;
  return copy;
}

/** Entries with the current-parent flag moved to `parentId` (or cleared when null). */
function markCurrentParent(image: Qcow2Image, entries: SnapshotEntry[], parentId: string | null, activeL1: Pick<L1Table, 'offset' | 'bytes'>): SnapshotEntry[] {
  const activeL1Offset = activeL1.offset;
  const nowMs = Date.now();
  const since = { currentSinceSec: Math.floor(nowMs / 1000), currentSinceNsec: (nowMs % 1000) * 1_000_000 };
  return entries.map((entry) => {
    const record = recordOf(entry);
    if (entry.id === parentId) return withRecord(image, entry, { currentParent: true, currentInferred: false, activeL1Offset, activeL1Checksum: l1Checksum(activeL1.bytes), ...since });
    if (record?.currentParent) return withRecord(image, entry, { currentParent: false, currentInferred: false, activeL1Offset: 0, activeL1Checksum: undefined, currentSinceSec: 0, currentSinceNsec: 0 });
    return entry;
  });
}

// ------------------------------------------------------------------ operations

export interface CreateSnapshotOptions {
  name: string;
  /** The parent of the current state, recorded as the new snapshot's parent (from the tree). */
  parentId?: string | null;
  now?: Date;
  /** A description kept in Cowbell's record (format/cowbell-record.ts); refused before anything is written when too long. */
  note?: string;
}

export function createSnapshot(image: Qcow2Image, options: CreateSnapshotOptions, job: JobContext = silentJob): SnapshotEntry {
  image.assertWritable();
  refuseWithExternalData(image.header, 'internal snapshots');
  image.validateForChange();
  assertNewName(image, options.name);
  if (options.note !== undefined) encodeSnapshotNote(options.note);
  const parentId = options.parentId === undefined ? currentParentId(image) : options.parentId;
  /** The new snapshot table: this snapshot added, as the current state's parent. */
  const newTable = (l1Offset: number, now: Date): SnapshotEntry[] => {
    const entry: SnapshotEntry = {
      l1TableOffset: l1Offset,
      l1Size: image.l1.size,
      id: nextSnapshotId(image),
      name: options.name,
      dateSec: Math.floor(now.getTime() / 1000),
      dateNsec: (now.getTime() % 1000) * 1_000_000,
      vmClockNsec: 0n,
      vmStateSize32: 0,
      vmStateSizeLarge: 0n,
      diskSize: image.virtualSize,
      icount: 0n,
      extraData: newExtraData(0, image.virtualSize),
    };
    const recorded = withRecord(image, entry, { parentKnown: true, parentId: parentId ?? '', parentInferred: false, note: options.note });
    return markCurrentParent(image, [...image.snapshots, recorded], recorded.id, image.l1);
  };
  // A table that could not be written (a record past QEMU's bound on extra data, a table past its
  // 64 MiB) is refused here, before anything is written.
  serializeSnapshotTable(newTable(0, new Date(0)));
  const references = referencesToAdd(image, image.l1, job);
  return change(image, () => {
    job.progress('clearing COPIED flags', 0, 3, 'steps');
    // 1. Everything the active L1 reaches is about to be shared: its COPIED flags go first, while
    //    the refcounts are still 1 (a missing flag is harmless; one on a refcount-2 cluster is not).
    clearCopiedFlags(image, image.l1, true);
    image.flush();
    job.progress('copying the L1 table', 1, 3, 'steps');
    // 2. The snapshot's L1: a copy without COPIED flags, and one more reference to all it reaches.
    const l1Bytes = strippedL1Copy(image.l1, image.l1.size);
    const l1Offset = writeNewClusters(image, l1Bytes);
    addReferences(image, references);
    image.flush();
    job.progress('writing the snapshot table', 2, 3, 'steps');
    // 3. The new table, with this snapshot as the current state's parent.
    const entries = newTable(l1Offset, options.now ?? new Date());
    switchSnapshotTable(image, entries);
    image.flush();
    job.progress('done', 3, 3, 'steps');
    const created = entries[entries.length - 1];
    if (created === undefined) throw new Qcow2Error('INTERNAL', 'The new snapshot table is empty');
    return created;
  });
}

/**
 * Clears COPIED in every L2 table `l1` names (and in `l1` itself when it is the active table):
 * those tables are about to be shared. The L2 tables are written here; the caller's flush
 * makes them durable before anything raises their refcounts.
 */
function clearCopiedFlags(image: Qcow2Image, l1: L1Table, isActive: boolean): void {
  for (let l1Index = 0; l1Index < l1.size; l1Index++) {
    const l2Offset = image.l2OffsetAt(l1, l1Index);
    if (l2Offset === 0) continue;
    const { copied } = decodeL1(l1.view, l1Index * 8);
    const table = image.l2Cache.get(l2Offset);
    let changed = false;
    for (let slot = 0; slot < image.l2Entries; slot++) {
      const position = slot * image.l2EntryBytes;
      const high = table.view.getUint32(position);
      if ((high & 0x80000000) !== 0) {
        table.view.setUint32(position, (high & 0x7fffffff) >>> 0);
        changed = true;
      }
    }
    if (changed) table.dirty = true;
    if (isActive && copied) image.setL1Entry(l1Index, l2Offset, false);
  }
  // The L2 tables must reach the disk here, not later with unrelated changes.
  image.l2Cache.writeDirty();
}

export function applySnapshot(image: Qcow2Image, nameOrId: SnapshotRef, job: JobContext = silentJob): void {
  image.assertWritable();
  refuseWithExternalData(image.header, 'internal snapshots');
  image.validateForChange();
  const snapshot = findSnapshot(image, nameOrId);
  const snapshotL1 = image.loadSnapshotL1(snapshot);
  const diskSize = snapshot.diskSize ?? image.virtualSize;
  const needed = Math.ceil(diskSize / (image.l2Entries * image.clusterBytes));
  // A size no qcow2 disk can have (a damaged or crafted extra data field): refused before anything is allocated or written.
  if (diskSize > MAX_VIRTUAL_SIZE || needed * 8 > MAX_L1_BYTES) {
    throw new Qcow2Error('CORRUPT', `Snapshot ${snapshot.id} "${snapshot.name}" records a disk size of ${diskSize} bytes, more than a qcow2 disk with ${image.clusterBytes}-byte clusters can have; its entry in the snapshot table is damaged and nothing was changed`);
  }
  const newSize = Math.max(snapshotL1.size, needed);
  const references = referencesToAdd(image, snapshotL1, job);
  // The mark the snapshot's record gains must fit QEMU's bound on extra data: refused before anything is written.
  markCurrentParent(image, image.snapshots, snapshot.id, image.l1);
  change(image, () => {
    job.progress('copying the snapshot\'s L1 table', 0, 3, 'steps');
    // 0. The snapshot's L2 tables are about to be shared with the active state: COPIED flags in
    //    them (qemu-img snapshot -d sets them where a refcount fell to 1) go before the refcounts rise.
    clearCopiedFlags(image, snapshotL1, false);
    image.flush();
    // 1. A new active L1 elsewhere: the snapshot's, without COPIED flags (everything in it stays shared with the snapshot).
    const newBytes = strippedL1Copy(snapshotL1, newSize);
    const newL1: L1Table = { offset: 0, size: newSize, bytes: newBytes, view: view(newBytes) };
    newL1.offset = writeNewClusters(image, newBytes);
    addReferences(image, references);
    image.flush();
    // 2. One header write switches the active L1 (and the table's current-parent mark).
    job.progress('switching to the snapshot', 1, 3, 'steps');
    const oldL1 = image.l1;
    const entries = markCurrentParent(image, image.snapshots, snapshot.id, newL1);
    switchSnapshotTable(image, entries, () => {
      image.header.l1TableOffset = newL1.offset;
      image.header.l1Size = newSize;
      image.header.virtualSize = diskSize;
    });
    image.replaceActiveL1(newL1);
    // 3. The old active state is gone from disk: release what it held.
    job.progress('releasing the old state', 2, 3, 'steps');
    // Past the commit point a cancel cannot restore the old state: finish, so nothing is left dirty.
    forEachReference(image, oldL1, (cluster) => image.refcounts.decrementLater(cluster));
    for (const cluster of l1Clusters(image, oldL1.offset, oldL1.size)) image.refcounts.decrementLater(cluster);
    image.flush();
    image.rebuildMetadataClusters();
    job.progress('done', 3, 3, 'steps');
  });
}

export function deleteSnapshot(image: Qcow2Image, nameOrId: SnapshotRef, job: JobContext = silentJob): void {
  image.assertWritable();
  refuseWithExternalData(image.header, 'internal snapshots');
  image.validateForChange();
  const snapshot = findSnapshot(image, nameOrId);
  const snapshotL1 = image.loadSnapshotL1(snapshot);
  const removedRecord = recordOf(snapshot);
  // Children of the deleted snapshot now descend from its parent. (Computed before anything is
  // written: a record that would outgrow QEMU's bound on extra data is refused here.)
  const grandparent = removedRecord?.parentKnown ? removedRecord.parentId : null;
  let entries = image.snapshots
    .filter((entry) => entry !== snapshot)
    .map((entry) => {
      const record = recordOf(entry);
      if (record?.parentKnown && record.parentId === snapshot.id) {
        return grandparent !== null ? withRecord(image, entry, { parentId: grandparent }) : withRecord(image, entry, { parentKnown: false, parentId: '' });
      }
      return entry;
    });
  if (removedRecord?.currentParent && grandparent !== null) entries = markCurrentParent(image, entries, grandparent, image.l1);
  change(image, () => {
    job.progress('writing the snapshot table', 0, 3, 'steps');
    switchSnapshotTable(image, entries);
    job.progress('releasing the snapshot\'s clusters', 1, 3, 'steps');
    // Past the commit point a cancel cannot bring the snapshot back: finish, so nothing is left dirty.
    forEachReference(image, snapshotL1, (cluster) => image.refcounts.decrementLater(cluster));
    for (const cluster of l1Clusters(image, snapshotL1.offset, snapshotL1.size)) image.refcounts.decrementLater(cluster);
    image.flush();
    // Refcounts that dropped to 1 are durable now: the active tables may have their COPIED flags back.
    job.progress('restoring COPIED flags', 2, 3, 'steps');
    restoreActiveCopiedFlags(image);
    image.flush();
    image.rebuildMetadataClusters();
    job.progress('done', 3, 3, 'steps');
  });
}

/** Sets COPIED exactly where the refcount is 1, in the active L1 and the L2 tables only it holds. */
export function restoreActiveCopiedFlags(image: Qcow2Image): void {
  for (let l1Index = 0; l1Index < image.l1.size; l1Index++) {
    const { l2Offset, copied } = decodeL1(image.l1.view, l1Index * 8);
    if (l2Offset === 0) continue;
    const tableRefcount = image.refcounts.get(l2Offset / image.clusterBytes);
    const tableOwned = tableRefcount === 1;
    if (tableOwned !== copied) image.setL1Entry(l1Index, l2Offset, tableOwned);
    if (!tableOwned) continue;
    const table = image.l2Cache.get(l2Offset);
    for (let slot = 0; slot < image.l2Entries; slot++) {
      const position = slot * image.l2EntryBytes;
      const entry = decodeL2(table.view, position, image.l2Format);
      if (entry.kind === 'compressed' || entry.hostOffset === 0) continue;
      const owned = image.refcounts.get(entry.hostOffset / image.clusterBytes) === 1;
      if (owned !== entry.copied) {
        const high = table.view.getUint32(position);
        table.view.setUint32(position, (owned ? high | 0x80000000 : high & 0x7fffffff) >>> 0);
        table.dirty = true;
      }
    }
  }
}

export function renameSnapshot(image: Qcow2Image, nameOrId: SnapshotRef, newName: string): void {
  image.assertWritable();
  const snapshot = findSnapshot(image, nameOrId);
  if (snapshot.name === newName) return;
  assertNewName(image, newName);
  image.validateForChange();
  const entries = image.snapshots.map((entry) => (entry === snapshot ? { ...entry, name: newName } : entry));
  // Refused before anything is written when the table could not be (past 64 MiB).
  serializeSnapshotTable(entries);
  change(image, () => {
    switchSnapshotTable(image, entries);
    image.flush();
  });
}

/**
 * Sets the snapshot's note ('' clears it) in Cowbell's record: a new snapshot table and one header
 * write, as a rename. Refused before anything is written when the note is too long or the entry's
 * extra data belongs to another program.
 */
export function setSnapshotNote(image: Qcow2Image, nameOrId: SnapshotRef, note: string): void {
  image.assertWritable();
  const snapshot = findSnapshot(image, nameOrId);
  if (!canHoldCowbellRecord(snapshot)) {
    throw new Qcow2Error('FOREIGN_EXTRA_DATA', `Snapshot "${snapshot.name}" carries another program's data where Cowbell would keep its note; it is left as it is`);
  }
  if ((recordOf(snapshot)?.note ?? '') === note) return;
  const updated = withRecord(image, snapshot, { note });
  image.validateForChange();
  const entries = image.snapshots.map((entry) => (entry === snapshot ? updated : entry));
  serializeSnapshotTable(entries);
  change(image, () => {
    switchSnapshotTable(image, entries);
    image.flush();
  });
}

export { encodeL1, encodeL2, findSnapshot };
