/**
 * The space one L2 table names: the host clusters of plain data its entries hold and, of those,
 * the ones no other table names (refcount 1; QEMU counts one reference per L1 per L2 entry); and
 * the host clusters its compressed entries touch, with how often, for the pass to settle across
 * tables and states (compressed-clusters.ts). Optionally marks the host clusters holding data in a
 * per-file-cluster array.
 */
import { Qcow2Error } from '../errors.ts';
import { decodeL2, getRefcount, standardL2HostOffset } from '../format/entries.ts';
import type { Qcow2Image } from '../image/image.ts';
import type { CachedTable } from '../image/table-cache.ts';
import { withinHole, type HoleList } from '../io/hole-aware-file.ts';
import { NOT_COPIED } from './mapping-distance.ts';

export interface TableUsage {
  /** Bytes of the host clusters of plain (uncompressed) data the table names. */
  dataBytes: number;
  /** Of those, bytes in clusters only this table names (refcount 1). */
  ownDataBytes: number;
  /** Host clusters its compressed entries touch, each with the number of entries touching it; null when it has none. */
  compressed: Map<number, number> | null;
}

/** `marks` bit for a host cluster holding guest data some table names. */
export const MARK_DATA = 1;
/** `marks` bit for a host cluster holding metadata. */
export const MARK_METADATA = 2;

/** Refcount lookups that keep the last block at hand: the entries of a table mostly name neighbouring clusters. */
export class RefcountLookup {
  private readonly image: Qcow2Image;
  /** Clusters [first, end) the block at hand covers (none yet: an empty range). */
  private first = 0;
  private end = 0;
  private block: CachedTable | null = null;

  constructor(image: Qcow2Image) {
    this.image = image;
  }

  get(cluster: number): number {
    const refcounts = this.image.refcounts;
    if (cluster < this.first || cluster >= this.end) {
      // An offset that is not cluster-aligned names no cluster: its refcount means nothing.
      if (!Number.isSafeInteger(cluster) || cluster < 0) throw new Qcow2Error('CORRUPT', `A refcount was asked for cluster ${cluster}, which no cluster-aligned offset names`);
      const index = Math.floor(cluster / refcounts.entriesPerBlock);
      const offset = refcounts.blockOffset(index);
      this.block = offset === 0 ? null : refcounts.cache.get(offset);
      this.first = index * refcounts.entriesPerBlock;
      this.end = this.first + refcounts.entriesPerBlock;
    } else if (!Number.isInteger(cluster)) {
      throw new Qcow2Error('CORRUPT', `A refcount was asked for cluster ${cluster}, which no cluster-aligned offset names`);
    }
    const block = this.block;
    return block === null ? 0 : getRefcount(block.bytes, block.view, cluster - this.first, refcounts.order);
  }
}

/**
 * What `bytes` (an L2 table) names. Data clusters inside `holes` of the file were never written:
 * marked, but counted nowhere (they take no space; usage.ts counts them apart).
 */
export function measureTable(image: Qcow2Image, bytes: Uint8Array, refcounts: RefcountLookup, marks: Uint8Array | null, holes: HoleList | null = null): TableUsage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (image.externalData) return externalDataUsage(image, view);
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  const wordsPerEntry = image.l2EntryBytes / 4;
  const clusterBytes = image.clusterBytes;
  const marked = marks ?? new Uint8Array(0);
  const markCount = marked.length;
  let compressed: Map<number, number> | null = null;
  let dataBytes = 0;
  let ownDataBytes = 0;
  const entryBytes = image.l2EntryBytes;
  for (let slot = 0, word = 0; slot < image.l2Entries; slot++, word += wordsPerEntry) {
    // Most entries of a sparse disk are empty: both words of the offset half zero (a COPIED flag alone means nothing).
    if (((words[word] ?? 0) & NOT_COPIED) === 0 && (words[word + 1] ?? 0) === 0) continue;
    const hostOffset = standardL2HostOffset(view, slot * entryBytes);
    if (hostOffset > 0) {
      // A host cluster is held whole, however few of its subclusters hold data (extended L2), and a preallocated zero cluster holds one too.
      const cluster = hostOffset / clusterBytes;
      if (cluster < markCount) marked[cluster] = (marked[cluster] ?? 0) | MARK_DATA;
      if (holes !== null && withinHole(holes, hostOffset, hostOffset + clusterBytes)) continue;
      dataBytes += clusterBytes;
      if (refcounts.get(cluster) === 1) ownDataBytes += clusterBytes;
    } else if (hostOffset < 0) {
      const entry = decodeL2(view, slot * entryBytes, image.l2Format);
      const first = Math.floor(entry.hostOffset / clusterBytes);
      const last = Math.floor((entry.hostOffset + entry.compressedSize - 1) / clusterBytes);
      compressed ??= new Map();
      for (let cluster = first; cluster <= last; cluster++) {
        compressed.set(cluster, (compressed.get(cluster) ?? 0) + 1);
        if (cluster < markCount) marked[cluster] = (marked[cluster] ?? 0) | MARK_DATA;
      }
    }
  }
  return { dataBytes, ownDataBytes, compressed };
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
  return { dataBytes, ownDataBytes: dataBytes, compressed: null };
}
