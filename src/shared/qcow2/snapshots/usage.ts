/**
 * Where the space goes: for the current state and each snapshot, the bytes only it holds (freed
 * if it is deleted or reverted away) and the bytes it shares; metadata; leaked clusters.
 * Computed from the mapping tables and refcounts only — guest data is never read. A refcount of
 * 1 means exactly one L1 table reaches a cluster (QEMU counts one reference per L1 per L2 entry).
 */
import * as fs from 'node:fs';
import { getRefcount } from '../format/entries.ts';
import { INCOMPAT_DIRTY } from '../format/limits.ts';
import { scanBitmaps, scanEncryptionHeader, type ExtensionReferenceSink } from '../image/extension-references.ts';
import type { Qcow2Image } from '../image/image.ts';
import { imageFileHoles } from '../image/file-holes.ts';
import { descriptorOf } from '../io/fail-stop-file.ts';
import { withinHole, type HoleList } from '../io/hole-aware-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { UsageReport } from '../model.ts';
import { MappingPass, type MappedState } from './mapping-pass.ts';
import { MARK_DATA, MARK_METADATA } from './table-usage.ts';

/** The current state first, then each snapshot in the image's order. */
export function mappedStates(image: Qcow2Image): MappedState[] {
  return [{ l1: image.l1, ownsL1: false }, ...image.snapshots.map((snapshot) => ({ l1: image.loadSnapshotL1(snapshot), ownsL1: true }))];
}

/**
 * What a revert discards: the bytes of the current state that no snapshot holds (its data and the
 * tables mapping it), as the tree's "unsaved" figure counts them.
 */
export function currentUnsavedBytes(image: Qcow2Image, job: JobContext = silentJob): number {
  return new MappingPass(image, [{ l1: image.l1, ownsL1: false }], { usage: true, distances: false, guestClusters: 0, job }).run().usage(0).exclusiveBytes;
}

/** The whole space picture, from one pass over every state's mappings. */
export function imageUsage(image: Qcow2Image, job: JobContext = silentJob): UsageReport {
  const fileClusters = Math.ceil(image.file.size() / image.clusterBytes);
  // One byte per cluster of the file: what the tables name (data, L2 tables) and the other metadata.
  const marks = new Uint8Array(fileClusters);
  const pass = new MappingPass(image, mappedStates(image), { usage: true, distances: false, guestClusters: 0, marks, job }).run();
  const snapshots = image.snapshots.map((snapshot, index) => ({ id: snapshot.id, name: snapshot.name, ...pass.usage(index + 1) }));
  job.progress('refcounts', 0, 1, 'steps');
  const descriptor = descriptorOf(image.file);
  const holes = imageFileHoles(image);
  const { allocatedClusters, metadataClusters, leakedClusters, unwrittenClusters } = countClusters(image, marks, holes, job);
  job.progress('refcounts', 1, 1, 'steps');
  return {
    virtualSize: image.virtualSize,
    fileSize: image.file.size(),
    ...(descriptor === null ? {} : { bytesOnDisk: fs.fstatSync(descriptor).blocks * 512 }),
    allocatedBytes: allocatedClusters * image.clusterBytes,
    ...(unwrittenClusters > 0 ? { unwrittenBytes: unwrittenClusters * image.clusterBytes } : {}),
    metadataBytes: metadataClusters * image.clusterBytes,
    leakedBytes: leakedClusters * image.clusterBytes,
    current: pass.usage(0),
    snapshots,
    ...((image.header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n ? { staleRefcounts: true as const } : {}),
  };
}

interface ClusterCounts {
  allocatedClusters: number;
  metadataClusters: number;
  leakedClusters: number;
  /** Allocated data clusters (named by a state, not metadata) inside `holes`. */
  unwrittenClusters: number;
}

/**
 * Allocated clusters (refcount > 0), metadata clusters, and leaked ones (allocated, reached by
 * nothing), once the mapping pass has marked the data clusters and L2 tables every state names.
 */
function countClusters(image: Qcow2Image, marks: Uint8Array, holes: HoleList | null, job: JobContext): ClusterCounts {
  const fileClusters = marks.length;
  const markRange = (offset: number, bytes: number): void => {
    const end = Math.min(fileClusters, Math.ceil((offset + bytes) / image.clusterBytes));
    for (let cluster = Math.floor(offset / image.clusterBytes); cluster < end; cluster++) marks[cluster] = (marks[cluster] ?? 0) | MARK_METADATA;
  };
  markRange(0, image.clusterBytes);
  markRange(image.refcounts.tableOffset, image.refcounts.tableClusters * image.clusterBytes);
  for (let index = 0; index < image.refcounts.tableEntries; index++) {
    const blockOffset = image.refcounts.blockOffset(index);
    if (blockOffset !== 0) markRange(blockOffset, image.clusterBytes);
  }
  if (image.header.snapshotCount > 0) markRange(image.header.snapshotsOffset, image.snapshotTableBytes);
  markRange(image.l1.offset, image.l1.size * 8);
  for (const snapshot of image.snapshots) markRange(snapshot.l1TableOffset, snapshot.l1Size * 8);
  // What header extensions hold (the LUKS area, persistent bitmaps) is metadata too, not a leak;
  // their damage is check's to report.
  const extensions: ExtensionReferenceSink = {
    add: (offset, bytes) => {
      if (Number.isSafeInteger(offset) && offset >= 0 && bytes > 0) markRange(offset, bytes);
      return true;
    },
    corruption: () => {},
  };
  scanEncryptionHeader(image, extensions);
  scanBitmaps(image, extensions);
  job.throwIfCancelled();
  let metadataClusters = 0;
  for (let cluster = 0; cluster < fileClusters; cluster++) metadataClusters += ((marks[cluster] ?? 0) & MARK_METADATA) >>> 1;
  let allocatedClusters = 0;
  let leakedClusters = 0;
  let unwrittenClusters = 0;
  const clusterBytes = image.clusterBytes;
  const refcounts = image.refcounts;
  // First cluster each block counts, by block offset (a corrupt table may name one block twice).
  const blocks = new Map<number, number[]>();
  for (let tableIndex = 0; tableIndex < refcounts.tableEntries; tableIndex++) {
    const blockOffset = refcounts.blockOffset(tableIndex);
    if (blockOffset === 0) continue;
    const firsts = blocks.get(blockOffset) ?? [];
    firsts.push(tableIndex * refcounts.entriesPerBlock);
    blocks.set(blockOffset, firsts);
  }
  // Blocks in file order, read in large runs.
  refcounts.cache.scan(blocks.keys(), (blockOffset, bytes) => {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (const first of blocks.get(blockOffset) ?? []) {
      for (let index = 0; index < refcounts.entriesPerBlock; index++) {
        if (getRefcount(bytes, view, index, refcounts.order) === 0) continue;
        allocatedClusters++;
        const cluster = first + index;
        const mark = marks[cluster] ?? 0;
        if (cluster >= fileClusters || mark === 0) leakedClusters++;
        else if (holes !== null && mark === MARK_DATA && withinHole(holes, cluster * clusterBytes, (cluster + 1) * clusterBytes)) unwrittenClusters++;
      }
    }
  });
  return { allocatedClusters, metadataClusters, leakedClusters, unwrittenClusters };
}
