/**
 * Where the space goes: for the current state and each snapshot, the bytes only it holds (freed
 * if it is deleted or reverted away) and the bytes it shares; metadata; leaked clusters.
 * Computed from the mapping tables and refcounts only — guest data is never read. A refcount of
 * 1 means exactly one L1 table reaches a cluster (QEMU counts one reference per L1 per L2 entry).
 */
import { decodeL2, getRefcount, standardL2HostOffset } from '../format/entries.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import type { L1Table, Qcow2Image } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { UsageReport } from '../model.ts';

interface TableUsage {
  /** Guest data bytes the table names (compressed entries count their compressed size). */
  dataBytes: number;
  /** Of those, bytes in clusters only this table names (refcount 1). */
  ownDataBytes: number;
}

/** All bits of an entry's first big-endian word but COPIED (the top bit of its first byte), in native word order. */
const NOT_COPIED = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0xffffff7f : 0x7fffffff;

export interface L1Usage {
  exclusiveBytes: number;
  sharedBytes: number;
}

export class UsageCalculator {
  private readonly image: Qcow2Image;
  private readonly tables = new Map<number, TableUsage>();
  private readonly job: JobContext;
  /** When asked for: the host clusters holding data that the tables seen so far name (one byte per cluster of the file). */
  readonly dataClusters: Uint8Array | null;

  constructor(image: Qcow2Image, job: JobContext = silentJob, options: { markDataClusters?: boolean } = {}) {
    this.image = image;
    this.job = job;
    this.dataClusters = options.markDataClusters ? new Uint8Array(Math.ceil(image.file.size() / image.clusterBytes)) : null;
  }

  /** Every L2 table seen so far. */
  tableOffsets(): IterableIterator<number> {
    return this.tables.keys();
  }

  private markData(cluster: number): void {
    if (this.dataClusters !== null && cluster < this.dataClusters.length) this.dataClusters[cluster] = 1;
  }

  private tableUsage(l2Offset: number): TableUsage {
    const cached = this.tables.get(l2Offset);
    if (cached) return cached;
    const image = this.image;
    const table = image.l2Cache.get(l2Offset);
    const usage: TableUsage = { dataBytes: 0, ownDataBytes: 0 };
    const compressedTouches = new Map<number, number>();
    const compressedEntries: { first: number; last: number; bytes: number }[] = [];
    const words = new Uint32Array(table.bytes.buffer, table.bytes.byteOffset, table.bytes.byteLength >>> 2);
    const wordsPerEntry = image.l2EntryBytes / 4;
    if (image.externalData) return this.remember(l2Offset, externalDataUsage(image, table.view));
    for (let slot = 0; slot < image.l2Entries; slot++) {
      // Most entries of a sparse disk are empty: both words of the offset half zero (a COPIED flag alone means nothing).
      if (((words[slot * wordsPerEntry] ?? 0) & NOT_COPIED) === 0 && (words[slot * wordsPerEntry + 1] ?? 0) === 0) continue;
      const hostOffset = standardL2HostOffset(table.view, slot * image.l2EntryBytes);
      if (hostOffset > 0) {
        // A host cluster is held whole, however few of its subclusters hold data (extended L2), and a preallocated zero cluster holds one too.
        usage.dataBytes += image.clusterBytes;
        if (image.refcounts.get(hostOffset / image.clusterBytes) === 1) usage.ownDataBytes += image.clusterBytes;
        this.markData(hostOffset / image.clusterBytes);
      } else if (hostOffset < 0) {
        const entry = decodeL2(table.view, slot * image.l2EntryBytes, image.l2Format);
        const first = Math.floor(entry.hostOffset / image.clusterBytes);
        const last = Math.floor((entry.hostOffset + entry.compressedSize - 1) / image.clusterBytes);
        for (let cluster = first; cluster <= last; cluster++) {
          compressedTouches.set(cluster, (compressedTouches.get(cluster) ?? 0) + 1);
          this.markData(cluster);
        }
        compressedEntries.push({ first, last, bytes: entry.compressedSize });
        usage.dataBytes += entry.compressedSize;
      }
    }
    // A compressed entry is this table's own if no other table's entries touch its host clusters.
    for (const entry of compressedEntries) {
      let own = true;
      for (let cluster = entry.first; cluster <= entry.last && own; cluster++) {
        if (image.refcounts.get(cluster) > (compressedTouches.get(cluster) ?? 0)) own = false;
      }
      if (own) usage.ownDataBytes += entry.bytes;
    }
    this.tables.set(l2Offset, usage);
    return usage;
  }

  private remember(l2Offset: number, usage: TableUsage): TableUsage {
    this.tables.set(l2Offset, usage);
    return usage;
  }

  /** Exclusive and shared bytes of everything an L1 table reaches (its own table clusters count as exclusive). */
  l1Usage(l1: L1Table, ownTableClusters: boolean): L1Usage {
    const image = this.image;
    let exclusiveBytes = ownTableClusters ? Math.ceil((l1.size * 8) / image.clusterBytes) * image.clusterBytes : 0;
    let sharedBytes = 0;
    for (let l1Index = 0; l1Index < l1.size; l1Index++) {
      const l2Offset = image.l2OffsetAt(l1, l1Index);
      if (l2Offset === 0) continue;
      if (l1Index % 256 === 0) this.job.throwIfCancelled();
      const usage = this.tableUsage(l2Offset);
      if (image.refcounts.get(l2Offset / image.clusterBytes) === 1) {
        exclusiveBytes += image.clusterBytes + usage.ownDataBytes;
        sharedBytes += usage.dataBytes - usage.ownDataBytes;
      } else {
        sharedBytes += usage.dataBytes;
      }
    }
    return { exclusiveBytes, sharedBytes };
  }
}

/**
 * An L2 table of an image whose guest clusters live in an external data file: each allocated
 * cluster is there (host offset 0 included: its COPIED flag tells it from an empty entry) with an
 * implicit refcount of 1, so its own; nothing in the qcow2 file is data.
 */
function externalDataUsage(image: Qcow2Image, table: DataView): TableUsage {
  let dataBytes = 0;
  for (let slot = 0; slot < image.l2Entries; slot++) {
    const entry = decodeL2(table, slot * image.l2EntryBytes, image.l2Format);
    if (entry.kind === 'normal' || (entry.kind === 'zero' && entry.hostOffset !== 0)) dataBytes += image.clusterBytes;
  }
  return { dataBytes, ownDataBytes: dataBytes };
}

export function snapshotUsage(image: Qcow2Image, snapshot: SnapshotEntry, calculator: UsageCalculator): L1Usage {
  return calculator.l1Usage(image.loadSnapshotL1(snapshot), true);
}

/** The whole space picture. */
export function imageUsage(image: Qcow2Image, job: JobContext = silentJob): UsageReport {
  const calculator = new UsageCalculator(image, job, { markDataClusters: true });
  const total = image.snapshots.length + 2;
  job.progress('current state', 0, total, 'steps');
  const current = calculator.l1Usage(image.l1, false);
  const snapshots = image.snapshots.map((snapshot, index) => {
    job.progress('snapshots', index + 1, total, 'steps');
    const usage = snapshotUsage(image, snapshot, calculator);
    return { id: snapshot.id, name: snapshot.name, ...usage };
  });
  job.progress('refcounts', total - 1, total, 'steps');
  const { allocatedClusters, metadataClusters, leakedClusters } = countClusters(image, calculator, job);
  return {
    virtualSize: image.virtualSize,
    fileSize: image.file.size(),
    allocatedBytes: allocatedClusters * image.clusterBytes,
    metadataBytes: metadataClusters * image.clusterBytes,
    leakedBytes: leakedClusters * image.clusterBytes,
    current,
    snapshots,
  };
}

/**
 * Allocated clusters (refcount > 0), metadata clusters, and leaked ones (allocated, reached by
 * nothing), once `calculator` has seen every state: it marked the data clusters their tables
 * name. The bitmaps are sized by the file, which bounds them.
 */
function countClusters(image: Qcow2Image, calculator: UsageCalculator, job: JobContext): { allocatedClusters: number; metadataClusters: number; leakedClusters: number } {
  const fileClusters = Math.ceil(image.file.size() / image.clusterBytes);
  const metadata = new Uint8Array(fileClusters);
  const markRange = (offset: number, bytes: number): void => {
    const end = Math.min(fileClusters, Math.ceil((offset + bytes) / image.clusterBytes));
    for (let cluster = Math.floor(offset / image.clusterBytes); cluster < end; cluster++) metadata[cluster] = 1;
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
  for (const l2Offset of calculator.tableOffsets()) markRange(l2Offset, image.clusterBytes);
  job.throwIfCancelled();
  let metadataClusters = 0;
  for (let cluster = 0; cluster < fileClusters; cluster++) metadataClusters += metadata[cluster] ?? 0;
  const data = calculator.dataClusters ?? new Uint8Array(0);
  const reached = (cluster: number): boolean => (metadata[cluster] ?? 0) !== 0 || (data[cluster] ?? 0) !== 0;
  let allocatedClusters = 0;
  let leakedClusters = 0;
  const refcounts = image.refcounts;
  for (let tableIndex = 0; tableIndex < refcounts.tableEntries; tableIndex++) {
    const blockOffset = refcounts.blockOffset(tableIndex);
    if (blockOffset === 0) continue;
    const block = refcounts.cache.get(blockOffset);
    const first = tableIndex * refcounts.entriesPerBlock;
    for (let index = 0; index < refcounts.entriesPerBlock; index++) {
      if (getRefcount(block.bytes, block.view, index, refcounts.order) === 0) continue;
      allocatedClusters++;
      const cluster = first + index;
      if (cluster >= fileClusters || !reached(cluster)) leakedClusters++;
    }
  }
  return { allocatedClusters, metadataClusters, leakedClusters };
}
