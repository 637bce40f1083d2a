/**
 * Which parts of a guest disk its mapping tables can be trusted for, without stopping at the first
 * broken one: a rescue copy (convert --rescue) reads the trusted runs and writes zeros for the
 * rest. Strict reads (image.ts) throw at the first inconsistency, and read zeros where a cluster
 * lies past the end of the file, as QEMU does; this names each such place instead. Every check is
 * per L1 entry, L2 entry or subcluster, so one broken table costs only the guest range it maps.
 * The backing chain is scanned the same way where a layer leaves a range unallocated.
 */
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned } from '../format/bytes.ts';
import { decodeL1, decodeL2, l1HasReservedBits, type L2Entry } from '../format/entries.ts';
import { MAX_HOST_OFFSET } from '../format/limits.ts';
import type { UnreadableReason } from '../model.ts';
import type { GuestReader } from './guest-reader.ts';
import { Qcow2Image, Qcow2StateView, type L1Table } from './image.ts';
import { RawImage } from './raw-image.ts';

/**
 * data: guest bytes a strict read returns (from this layer or one below); compressed: the same, in
 * a compressed cluster (its stream is only judged when read); zero: reads as zeros without a read;
 * damaged: the tables cannot say what is there.
 */
export type ScanKind = 'data' | 'compressed' | 'zero' | 'damaged';

export interface Damage {
  reason: UnreadableReason;
  detail: string;
}

export interface ScanRun {
  start: number;
  length: number;
  kind: ScanKind;
  /** Set for damaged runs only. */
  damage?: Damage;
}

/** Scans a source's guest disk: a qcow2 image (its current state or a snapshot's view) or a raw file. */
export class DamageScanner {
  private readonly source: GuestReader;
  private readonly layers = new Map<Qcow2Image, LayerFacts>();

  constructor(source: GuestReader) {
    this.source = source;
  }

  /** The runs of [start, end), in order, adjacent runs of one kind (and one damage) merged. */
  runs(start: number, end: number): ScanRun[] {
    const runs: ScanRun[] = [];
    const add = (run: ScanRun): void => {
      if (run.length <= 0) return;
      const last = runs.at(-1);
      if (last !== undefined && last.kind === run.kind && last.damage?.reason === run.damage?.reason && last.damage?.detail === run.damage?.detail) last.length += run.length;
      else runs.push({ ...run });
    };
    const source = this.source;
    const limit = Math.min(end, source.virtualSize);
    if (source instanceof Qcow2StateView) this.scanLayer(source.image, source.l1, start, limit, add, null);
    else if (source instanceof Qcow2Image) this.scanLayer(source, source.l1, start, limit, add, null);
    else this.scanBelow(source, start, limit, add);
    if (limit < end) add({ start: Math.max(start, limit), length: end - Math.max(start, limit), kind: 'zero' });
    return runs;
  }

  private facts(image: Qcow2Image, scanned: L1Table): LayerFacts {
    let facts = this.layers.get(image);
    if (facts === undefined) {
      facts = new LayerFacts(image);
      this.layers.set(image, facts);
    }
    facts.addL2Tables(scanned);
    return facts;
  }

  private scanLayer(image: Qcow2Image, l1: L1Table, start: number, end: number, add: (run: ScanRun) => void, where: string | null): void {
    const facts = this.facts(image, l1);
    const clusterBytes = image.clusterBytes;
    const l2Span = image.l2Entries * clusterBytes;
    const damaged = (from: number, to: number, reason: UnreadableReason, detail: string): void => add({ start: from, length: to - from, kind: 'damaged', damage: { reason, detail: where === null ? detail : `${detail} (in the backing file ${where})` } });
    let position = start;
    while (position < end) {
      const l1Index = Math.floor(position / l2Span);
      if (l1Index >= l1.size) {
        this.below(image, position, end, add);
        return;
      }
      const spanEnd = Math.min(end, (l1Index + 1) * l2Span);
      const l2Offset = decodeL1(l1.view, l1Index * 8).l2Offset;
      const problem: [UnreadableReason, string] | null = l1HasReservedBits(l1.view, l1Index * 8) ? ['L1_RESERVED_BITS', `L1 entry ${l1Index} has reserved bits set`] : facts.l2TableProblem(l1Index, l2Offset);
      if (problem !== null) damaged(position, spanEnd, problem[0], problem[1]);
      else if (l2Offset === 0) this.below(image, position, spanEnd, add);
      else {
        const table = tryReadTable(image, l2Offset);
        if (table instanceof Qcow2Error) damaged(position, spanEnd, table.code === 'IO_ERROR' ? 'READ_ERROR' : 'L2_OUT_OF_FILE', `The L2 table at ${hex(l2Offset)} could not be read: ${table.message}`);
        else {
          while (position < spanEnd) {
            const clusterStart = position - (position % clusterBytes);
            const clusterEnd = Math.min(spanEnd, clusterStart + clusterBytes);
            const slot = (clusterStart / clusterBytes) % image.l2Entries;
            const entry = decodeL2(table, slot * image.l2EntryBytes, image.l2Format);
            const context = `L2 table at ${hex(l2Offset)}, entry ${slot}`;
            this.scanCluster(image, facts, entry, clusterStart, position, clusterEnd, context, add, damaged);
            position = clusterEnd;
          }
        }
      }
      position = spanEnd;
    }
  }

  private scanCluster(
    image: Qcow2Image,
    facts: LayerFacts,
    entry: L2Entry,
    clusterStart: number,
    from: number,
    to: number,
    context: string,
    add: (run: ScanRun) => void,
    damaged: (from: number, to: number, reason: UnreadableReason, detail: string) => void,
  ): void {
    const clusterBytes = image.clusterBytes;
    if (entry.reservedBitsSet) return damaged(from, to, 'L2_RESERVED_BITS', `${context} has reserved bits set`);
    if (entry.kind === 'compressed') {
      if (entry.hostOffset >= facts.fileSize) return damaged(from, to, 'CLUSTER_OUT_OF_FILE', `${context} points to compressed data at ${hex(entry.hostOffset)}, past the end of the file`);
      if (facts.overlapsMetadata(entry.hostOffset, entry.compressedSize)) return damaged(from, to, 'CLUSTER_OVERLAPS_METADATA', `${context} points to compressed data at ${hex(entry.hostOffset)}, on metadata`);
      return add({ start: from, length: to - from, kind: 'compressed' });
    }
    if (entry.kind === 'unallocated' && !image.l2Format.extendedL2) return this.below(image, from, to, add);
    if (entry.kind === 'zero') return add({ start: from, length: to - from, kind: 'zero' });
    if (entry.hostOffset !== 0) {
      if (!isAligned(entry.hostOffset, clusterBytes)) return damaged(from, to, 'CLUSTER_UNALIGNED', `${context} points to an unaligned host offset`);
      if (entry.hostOffset > MAX_HOST_OFFSET - clusterBytes || entry.hostOffset >= facts.fileSize) return damaged(from, to, 'CLUSTER_OUT_OF_FILE', `${context} points past the end of the file`);
      if (facts.overlapsMetadata(entry.hostOffset, clusterBytes)) return damaged(from, to, 'CLUSTER_OVERLAPS_METADATA', `${context} points to ${hex(entry.hostOffset)}, which holds metadata`);
    }
    // Guest bytes whose host bytes lie past the end of the file (a file cut short inside the cluster).
    const storedEnd = entry.hostOffset === 0 ? to : Math.max(from, Math.min(to, clusterStart + facts.fileSize - entry.hostOffset));
    const dataRun = (runFrom: number, runTo: number): void => {
      add({ start: runFrom, length: Math.min(runTo, storedEnd) - runFrom, kind: 'data' });
      if (runTo > storedEnd) damaged(Math.max(runFrom, storedEnd), runTo, 'CLUSTER_OUT_OF_FILE', `${context}: the file ends inside its cluster at ${hex(entry.hostOffset)}`);
    };
    if (!image.l2Format.extendedL2) return dataRun(from, to);
    // As in QEMU, one invalid subcluster makes the whole entry invalid: its bitmap cannot be trusted.
    const invalid = invalidSubcluster(entry);
    if (invalid !== null) return damaged(from, to, 'L2_BITMAP_INVALID', `${context}: subcluster ${invalid}${entry.hostOffset === 0 ? ' is allocated in a cluster without a host offset' : ' is both allocated and zero'}`);
    const subclusterBytes = image.subclusterBytes;
    let position = from;
    while (position < to) {
      const subcluster = Math.floor((position - clusterStart) / subclusterBytes);
      const subEnd = Math.min(to, clusterStart + (subcluster + 1) * subclusterBytes);
      const allocated = ((entry.allocMask >>> subcluster) & 1) === 1;
      const zero = ((entry.zeroMask >>> subcluster) & 1) === 1;
      if (allocated) dataRun(position, subEnd);
      else if (zero) add({ start: position, length: subEnd - position, kind: 'zero' });
      else this.below(image, position, subEnd, add);
      position = subEnd;
    }
  }

  /** What an image shows where it maps nothing: its backing file, or zeros (past the backing file's end too). */
  private below(image: Qcow2Image, from: number, to: number, add: (run: ScanRun) => void): void {
    const backing = image.backing;
    if (backing === null) return add({ start: from, length: to - from, kind: 'zero' });
    const backingEnd = Math.max(from, Math.min(to, backing.virtualSize));
    if (backing instanceof Qcow2Image) this.scanLayer(backing, backing.l1, from, backingEnd, add, backing.file.path);
    else this.scanBelow(backing, from, backingEnd, add);
    if (backingEnd < to) add({ start: backingEnd, length: to - backingEnd, kind: 'zero' });
  }

  private scanBelow(reader: GuestReader, from: number, to: number, add: (run: ScanRun) => void): void {
    if (reader instanceof RawImage) {
      for (const extent of reader.extents(from, to)) add({ start: extent.start, length: extent.length, kind: extent.data ? 'data' : 'zero' });
      return;
    }
    add({ start: from, length: to - from, kind: 'data' });
  }
}

/** The first subcluster an extended L2 entry cannot describe (allocated and zero, or allocated without a host cluster), or null. */
function invalidSubcluster(entry: L2Entry): number | null {
  const bad = (entry.allocMask & entry.zeroMask) | (entry.hostOffset === 0 ? entry.allocMask : 0);
  return bad === 0 ? null : 31 - Math.clz32(bad & -bad);
}

/** One image's file size and the host clusters its metadata takes, for judging table entries. */
class LayerFacts {
  readonly fileSize: number;
  private readonly image: Qcow2Image;
  /** Header, L1 tables, refcount table and blocks, snapshot table: never an L2 table or guest data. */
  private readonly fixed = new Set<number>();
  /** L2 tables of the states scanned so far (and the active one): never guest data. */
  private readonly l2Tables = new Set<number>();
  private readonly scannedL1s = new Set<L1Table>();

  constructor(image: Qcow2Image) {
    this.image = image;
    this.fileSize = image.file.size();
    const clusterBytes = image.clusterBytes;
    const add = (offset: number, bytes: number): void => {
      for (let cluster = Math.floor(offset / clusterBytes); cluster < Math.ceil((offset + bytes) / clusterBytes); cluster++) this.fixed.add(cluster);
    };
    add(0, clusterBytes);
    add(image.l1.offset, image.l1.size * 8);
    add(image.refcounts.tableOffset, image.refcounts.tableClusters * clusterBytes);
    if (image.header.snapshotCount > 0) add(image.header.snapshotsOffset, image.snapshotTableBytes);
    for (const snapshot of image.snapshots) {
      if (isAligned(snapshot.l1TableOffset, clusterBytes) && snapshot.l1TableOffset + snapshot.l1Size * 8 <= this.fileSize) add(snapshot.l1TableOffset, snapshot.l1Size * 8);
    }
    for (let index = 0; index < image.refcounts.tableEntries; index++) {
      const blockOffset = image.refcounts.blockOffsetIfValid(index);
      if (blockOffset !== null && blockOffset !== 0) add(blockOffset, clusterBytes);
    }
    this.addL2Tables(image.l1);
  }

  addL2Tables(l1: L1Table): void {
    if (this.scannedL1s.has(l1)) return;
    this.scannedL1s.add(l1);
    for (let index = 0; index < l1.size; index++) {
      const { l2Offset } = decodeL1(l1.view, index * 8);
      if (l2Offset !== 0 && isAligned(l2Offset, this.image.clusterBytes)) this.l2Tables.add(l2Offset / this.image.clusterBytes);
    }
  }

  /** Why the L2 table an L1 entry names cannot be read, as [reason, detail]; null when it can (or there is none). */
  l2TableProblem(l1Index: number, l2Offset: number): [UnreadableReason, string] | null {
    if (l2Offset === 0) return null;
    const clusterBytes = this.image.clusterBytes;
    if (!isAligned(l2Offset, clusterBytes)) return ['L2_UNALIGNED', `L1 entry ${l1Index} points to an unaligned L2 table at ${hex(l2Offset)}`];
    if (l2Offset > MAX_HOST_OFFSET - clusterBytes || l2Offset + clusterBytes > this.fileSize) return ['L2_OUT_OF_FILE', `L1 entry ${l1Index} points to an L2 table at ${hex(l2Offset)}, past the end of the file`];
    if (this.fixed.has(l2Offset / clusterBytes)) return ['L2_OVERLAPS_METADATA', `L1 entry ${l1Index} points to an L2 table at ${hex(l2Offset)}, which holds other metadata`];
    return null;
  }

  /** Whether host bytes [offset, offset + bytes) touch a cluster holding metadata. */
  overlapsMetadata(offset: number, bytes: number): boolean {
    const clusterBytes = this.image.clusterBytes;
    for (let cluster = Math.floor(offset / clusterBytes); cluster < Math.ceil((offset + bytes) / clusterBytes); cluster++) {
      if (this.fixed.has(cluster) || this.l2Tables.has(cluster)) return true;
    }
    return false;
  }
}

/** An L2 table's entries, or why it could not be read (an I/O error; past the end of a file that shrank meanwhile). */
function tryReadTable(image: Qcow2Image, l2Offset: number): DataView | Qcow2Error {
  try {
    return image.l2Cache.get(l2Offset).view;
  } catch (error) {
    if (error instanceof Qcow2Error && (error.code === 'IO_ERROR' || error.code === 'CORRUPT')) return error;
    throw error;
  }
}
