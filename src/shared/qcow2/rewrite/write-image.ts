/**
 * The second pass of a rewrite: writes the new image front to back from the plan (plan.ts).
 *
 * Layout: header | current L1 | LUKS area (encrypted images) | the data, in the order the states
 * first name it (the current state's in guest order first), a batch at a time (its whole clusters,
 * then its byte-packed compressed data), with the L2 tables a few MiB at a time between | snapshot
 * L1 tables | snapshot table | refcount blocks and table (image/host-space-writer.ts places them).
 *
 * Each distinct data cluster is read once, decided on (stored, compressed, or — all zeros — a zero
 * or unallocated entry) and written once, however many states share it; its refcount is the
 * plan's reference count, so sharing survives and the refcounts are exact. COPIED is set exactly
 * where a refcount is 1, and never in a snapshot's L1.
 */
import { Qcow2Error } from '../errors.ts';
import { alignUp, view } from '../format/bytes.ts';
import { l1Checksum } from '../format/cowbell-record.ts';
import { encodeCompressedL2, encodeL1, encodeL2, type L2Entry } from '../format/entries.ts';
import { serializeHeaderArea, type Header } from '../format/header.ts';
import { serializeSnapshotTable, type SnapshotEntry } from '../format/snapshot-table.ts';
import { isAllZero } from '../format/zeroes.ts';
import { knownHoles, withinHole, type HoleList } from '../io/hole-aware-file.ts';
import { alignedBytes } from '../io/aligned-bytes.ts';
import type { BlockFile } from '../io/block-file.ts';
import { compressedStreamLength, decompressCluster, type CompressionType } from '../codec/compression.ts';
import { inlineCompressor, type ClusterCompressor } from '../codec/cluster-compressor.ts';
import { HostSpaceWriter } from '../image/host-space-writer.ts';
import type { Qcow2Image } from '../image/image.ts';
import type { JobContext } from '../job-context.ts';
import type { Steps } from '../steps.ts';
import type { DiskCipher } from '../crypto/disk-cipher.ts';
import { serializeCryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import { EXT_CRYPTO_HEADER } from '../format/header.ts';
import { forEachEntry, MARK_PARTLY_ALLOCATED, MARK_VERBATIM, type RewritePlan } from './plan.ts';
import { OUTPUT_UNALLOCATED, OUTPUT_ZERO } from './cluster-pairs.ts';
import type { EarlyVerifier } from './early-verify.ts';
import { recordTree, type TreeToKeep } from './tree-record.ts';

export type CompressionPolicy = 'keep' | 'compress' | 'uncompress';

export interface WriteImageOptions {
  header: Header;
  compression: CompressionPolicy;
  compressionType: CompressionType;
  /** Compresses batches of clusters (null unless compression is 'compress'). */
  compressor: ClusterCompressor | null;
  /** Clusters read and written per batch. */
  batchClusters: number;
  /** The source's tree, recorded in the copy. */
  tree: TreeToKeep;
  /**
   * A LUKS-encrypted new image: its LUKS area (header and key material, written as it is) and the
   * data cipher its master key gives. Data clusters are encrypted for their new host offset;
   * nothing is stored compressed (QEMU would store compressed clusters unencrypted).
   */
  luks: { area: Uint8Array; cipher: DiskCipher } | null;
  /** The file will be flushed at the end: start its writeback as the data goes (host-space-writer.ts). */
  startWriteback?: boolean;
  /** Told of every run of data clusters copied as they are, and how far the file is written (early-verify.ts). */
  earlyVerifier?: EarlyVerifier | null;
}

export interface WriteImageResult {
  /** Guest clusters' worth of data, by how the new image stores them. */
  storedClusters: number;
  compressedClusters: number;
  zeroClusters: number;
  fileBytes: number;
  /** The new offset of the current state's L1 table (Cowbell's tree records point at it). */
  activeL1Offset: number;
}

/** L2 tables held back to be written side by side (see placeTables). */
const PENDING_TABLE_BYTES = 4 * 1024 * 1024;

/** Where a source data cluster or compressed cluster went. */
const UNWRITTEN = -1;
const AS_ZERO = -2;
const AS_UNALLOCATED = -3;
/** In a batch not written yet. */
const SCHEDULED = -4;

const EVERY_SUBCLUSTER = 0xffffffff;

interface Placement {
  offset: number;
  /** Compressed bytes at offset; 0 for a whole stored cluster. */
  compressedSize: number;
}

/** One distinct source cluster waiting in a batch. */
interface BatchItem {
  /** Source host cluster index (data), or its number in the plan's compressed clusters (compressed). */
  key: number;
  compressed: boolean;
  references: number;
  verbatim: boolean;
  /** The subclusters whose bytes the cluster holds (extended L2, MARK_PARTLY_ALLOCATED); the rest read zeros. Else every one. */
  allocMask: number;
  /** For compressed sources: the bytes as stored (kept as they are where the policy allows). */
  stored: Uint8Array | null;
  /** Where in the guest disk the cluster first appears (legacy AES numbers its sectors by it). */
  guestOffset: number;
  /** The cluster lies in a hole of the source file (it reads zeros): neither read nor scanned, its slot left as it was. */
  inHole: boolean;
}

export function* writeRewrittenImage(source: Qcow2Image, file: BlockFile, plan: RewritePlan, options: WriteImageOptions, job: JobContext): Steps<WriteImageResult> {
  return yield* new ImageWriter(source, file, plan, options, job).write();
}

class ImageWriter {
  private readonly clusterBytes: number;
  private readonly host: HostSpaceWriter;
  /** Per source host cluster: where its data went (UNWRITTEN, AS_ZERO, AS_UNALLOCATED or a host offset). */
  private readonly dataOffset: Float64Array;
  private readonly dataCompressedSize: Uint32Array;
  /** Per compressed source cluster (by its number in the plan): where it went, as dataOffset; and its new compressed size. */
  private readonly compressedOffset: Float64Array;
  private readonly compressedSize: Uint32Array;
  /** Source L2 offset → new offset (0: the table came out empty and is left out). */
  private readonly l2Placement = new Map<number, number>();
  private readonly batch: BatchItem[] = [];
  private readonly batchBuffer: Uint8Array;
  private readonly activeL1Clusters: number;
  private readonly zeroForm: 'zero' | 'unallocated' | 'stored';
  private readonly result: WriteImageResult = { storedClusters: 0, compressedClusters: 0, zeroClusters: 0, fileBytes: 0, activeL1Offset: 0 };
  private doneClusters = 0;
  private readonly totalClusters: number;
  private readonly source: Qcow2Image;
  private readonly file: BlockFile;
  private readonly plan: RewritePlan;
  private readonly options: WriteImageOptions;
  private readonly job: JobContext;
  private inlineCompressor: ClusterCompressor | null = null;
  /** Encoded L2 tables not yet in the file (placeTables). */
  private readonly pendingTables: { l2Offset: number; table: Uint8Array }[] = [];
  /**
   * Table buffers placed already, for the next tables, and the buffer that pads small structures
   * to whole clusters: a disk with 1,000 snapshots has ~1,000 L2 tables and 1,000 snapshot L1
   * tables of a few bytes each, and a new cluster-sized buffer for each was garbage the process
   * held until the collector ran.
   */
  private readonly spareTables: Uint8Array[] = [];
  private padding = new Uint8Array(0);
  /** Data clusters go to the new file byte for byte (no encryption on either side, no subclusters). */
  private readonly copiesPlainData: boolean;
  /**
   * The source file's holes, where its plain clusters read zeros without a read: a disk made with
   * preallocation=metadata maps every guest cluster into them (null for an encrypted source, whose
   * zeros decrypt to something else).
   */
  private readonly sourceHoles: HoleList | null;

  constructor(source: Qcow2Image, file: BlockFile, plan: RewritePlan, options: WriteImageOptions, job: JobContext) {
    this.source = source;
    this.file = file;
    this.plan = plan;
    this.options = options;
    this.job = job;
    this.clusterBytes = source.clusterBytes;
    this.activeL1Clusters = Math.ceil((source.l1.size * 8) / this.clusterBytes);
    // The file is new (io/atomic-file.ts makes it): zeros inside clusters stay holes (sparse).
    this.host = new HostSpaceWriter(file, { clusterBits: source.clusterBits, refcountOrder: options.header.refcountOrder }, this.clusterBytes * (1 + this.activeL1Clusters), { startWriteback: options.startWriteback, sparse: true });
    this.dataOffset = new Float64Array(plan.clusterReferences.length).fill(UNWRITTEN);
    this.dataCompressedSize = new Uint32Array(plan.clusterReferences.length);
    this.compressedOffset = new Float64Array(plan.compressed.count).fill(UNWRITTEN);
    this.compressedSize = new Uint32Array(plan.compressed.count);
    this.batchBuffer = alignedBytes(options.batchClusters * this.clusterBytes);
    // All-zero data reads the same as an unallocated cluster where no backing file shows through;
    // over one, only a version 3 image (the new one's version) has a zero cluster to say so.
    this.zeroForm = source.header.backingFile === null ? 'unallocated' : options.header.version === 3 ? 'zero' : 'stored';
    this.totalClusters = plan.dataClusters + plan.compressedClusters;
    this.copiesPlainData = options.luks === null && source.header.cryptMethod === 0 && !source.l2Format.extendedL2;
    this.sourceHoles = source.cipher === null ? knownHoles(source.file) : null;
  }

  *write(): Steps<WriteImageResult> {
    this.job.progress('copying', 0, this.totalClusters * this.clusterBytes, 'bytes');
    const luks = this.options.luks;
    const luksOffset = luks === null ? 0 : this.appendPadded(luks.area);
    for (const l2Offset of this.plan.l2Tables) {
      yield* this.copyTable(l2Offset);
    }
    this.placeTables();
    const activeL1 = this.l1Bytes(this.source.l1.bytes, this.source.l1.size, true);
    const snapshots: SnapshotEntry[] = [];
    for (const state of this.plan.states) {
      if (state.snapshot === null) continue;
      const l1 = this.l1Bytes(state.l1.bytes, state.l1.size, false);
      const l1Offset = l1.length === 0 ? 0 : this.appendPadded(l1);
      snapshots.push({ ...state.snapshot, l1TableOffset: l1Offset });
    }
    const activeL1Offset = this.source.l1.size > 0 ? this.clusterBytes : 0;
    const entries = recordTree(snapshots, this.options.tree, { oldOffset: this.source.l1.offset, newOffset: activeL1Offset, newChecksum: l1Checksum(activeL1) }, this.source.virtualSize);
    const header: Header = { ...this.options.header, l1Size: this.source.l1.size, l1TableOffset: activeL1Offset };
    if (luks !== null) {
      const pointer = serializeCryptoHeaderExtension({ offset: luksOffset, length: luks.area.length });
      header.extensions = header.extensions.map((extension) => (extension.type === EXT_CRYPTO_HEADER ? { type: EXT_CRYPTO_HEADER, data: pointer } : extension));
    }
    if (entries.length > 0) {
      const table = serializeSnapshotTable(entries);
      header.snapshotsOffset = this.appendPadded(table);
      header.snapshotCount = entries.length;
    }
    const refcounts = this.host.finish();
    header.refcountTableOffset = refcounts.tableOffset;
    header.refcountTableClusters = refcounts.tableClusters;
    if (activeL1.length > 0) this.file.write(activeL1, activeL1Offset);
    this.file.write(serializeHeaderArea(header), 0);
    this.result.fileBytes = this.host.end;
    this.result.activeL1Offset = activeL1Offset;
    this.job.progress('copying', this.totalClusters * this.clusterBytes, this.totalClusters * this.clusterBytes, 'bytes');
    return this.result;
  }

  /** An L1 table pointing at the new L2 tables; COPIED only in the current state's, where the table has one user. */
  private l1Bytes(sourceBytes: Uint8Array, size: number, active: boolean): Uint8Array {
    const bytes = new Uint8Array(size * 8);
    const data = view(bytes);
    const sourceView = view(sourceBytes);
    for (let index = 0; index < size; index++) {
      const l2Offset = this.source.l2OffsetAt({ offset: 0, size, bytes: sourceBytes, view: sourceView }, index);
      if (l2Offset === 0) continue;
      const placed = this.l2Placement.get(l2Offset) ?? 0;
      if (placed === 0) continue;
      encodeL1(data, index * 8, placed, active && this.plan.l2Users.get(l2Offset) === 1);
    }
    return bytes;
  }

  // ---------------------------------------------------------------- one L2 table and its data

  private *copyTable(l2Offset: number): Steps<void> {
    // The entries that say anything, and their slots (the rest stay unallocated).
    const entries: L2Entry[] = [];
    const slots: number[] = [];
    const firstGuestCluster = (this.plan.l2FirstIndex.get(l2Offset) ?? 0) * this.source.l2Entries;
    forEachEntry(this.source, l2Offset, (entry, slot) => {
      entries.push(entry);
      slots.push(slot);
    });
    for (const [index, entry] of entries.entries()) {
      const item = this.newItem(entry, (firstGuestCluster + (slots[index] ?? 0)) * this.clusterBytes);
      if (item === null) continue;
      this.batch.push(item);
      if (this.batch.length < this.options.batchClusters) continue;
      this.flushBatch();
      // A step per batch: one L2 table maps up to 512 MiB (64 KiB clusters), too long to hold a thread that must hear Ctrl-C.
      yield;
    }
    if (this.batch.length > 0) this.flushBatch();
    yield;
    const table = this.spareTables.pop()?.fill(0) ?? new Uint8Array(this.clusterBytes);
    const tableView = view(table);
    let empty = true;
    for (const [index, entry] of entries.entries()) {
      if (this.encodeEntry(tableView, (slots[index] ?? 0) * this.source.l2EntryBytes, entry)) empty = false;
    }
    if (empty) {
      this.l2Placement.set(l2Offset, 0);
      this.spareTables.push(table);
      return;
    }
    this.pendingTables.push({ l2Offset, table });
    if (this.pendingTables.length * this.clusterBytes >= PENDING_TABLE_BYTES) this.placeTables();
  }

  /**
   * L2 tables go into the file a few MiB at a time, side by side: a table between two runs of
   * compressed data would leave the rest of a cluster unused each time (QEMU packs compressed data
   * across its table allocations; a front-to-back writer groups the tables instead).
   */
  private placeTables(): void {
    for (const { l2Offset, table } of this.pendingTables.splice(0)) {
      this.l2Placement.set(l2Offset, this.host.appendClusters(table, this.plan.l2Users.get(l2Offset) ?? 1));
      // The host writer has copied or written the bytes: the buffer is free again.
      this.spareTables.push(table);
    }
  }

  /** Appends `bytes` padded with zeros to whole clusters (the writer copies or writes them at once, so one buffer serves every call). */
  private appendPadded(bytes: Uint8Array): number {
    if (bytes.length % this.clusterBytes === 0) return this.host.appendClusters(bytes);
    const length = alignUp(bytes.length, this.clusterBytes);
    if (this.padding.length < length) this.padding = new Uint8Array(length);
    const padded = this.padding.subarray(0, length);
    padded.set(bytes);
    padded.fill(0, bytes.length);
    return this.host.appendClusters(padded);
  }

  /** The batch item for an entry whose data is not written (nor scheduled) yet, or null. */
  private newItem(entry: L2Entry, guestOffset: number): BatchItem | null {
    if (entry.kind === 'compressed') {
      const number = this.compressedNumber(entry.hostOffset);
      if (this.compressedOffset[number] !== UNWRITTEN) return null;
      this.compressedOffset[number] = SCHEDULED;
      return { key: number, compressed: true, references: this.plan.compressed.referencesAt(number), verbatim: false, allocMask: EVERY_SUBCLUSTER, stored: null, guestOffset, inHole: false };
    }
    if (entry.kind !== 'normal') return null;
    const cluster = entry.hostOffset / this.clusterBytes;
    if (this.dataOffset[cluster] !== UNWRITTEN) return null;
    this.dataOffset[cluster] = SCHEDULED;
    const marks = this.plan.clusterMarks[cluster] ?? 0;
    const verbatim = (marks & MARK_VERBATIM) !== 0;
    const allocMask = !verbatim && (marks & MARK_PARTLY_ALLOCATED) !== 0 ? (this.plan.clusterAllocMasks[cluster] ?? EVERY_SUBCLUSTER) : EVERY_SUBCLUSTER;
    return { key: cluster, compressed: false, references: this.plan.clusterReferences[cluster] ?? 1, verbatim, allocMask, stored: null, guestOffset, inHole: false };
  }

  /** Encodes the new form of `entry` at `position`; returns whether the entry is anything but unallocated. */
  private encodeEntry(table: DataView, position: number, entry: L2Entry): boolean {
    const format = this.source.l2Format;
    const full = 0xffffffff;
    if (entry.kind === 'unallocated') {
      if (!format.extendedL2 || entry.zeroMask === 0) return false;
      encodeL2(table, position, format, { hostOffset: 0, copied: false, zero: false, allocMask: 0, zeroMask: entry.zeroMask });
      return true;
    }
    if (entry.kind === 'zero') {
      encodeL2(table, position, format, { hostOffset: 0, copied: false, zero: true, allocMask: 0, zeroMask: full });
      return true;
    }
    const compressedNumber = entry.kind === 'compressed' ? this.compressedNumber(entry.hostOffset) : -1;
    const placement = entry.kind === 'compressed' ? this.compressedPlacement(compressedNumber) : this.dataPlacement(entry.hostOffset / this.clusterBytes);
    if (placement.offset === UNWRITTEN || placement.offset === SCHEDULED) throw new Qcow2Error('INTERNAL', 'rewrite: an entry whose data was not written');
    if (placement.offset === AS_UNALLOCATED) return false;
    if (placement.offset === AS_ZERO) {
      encodeL2(table, position, format, { hostOffset: 0, copied: false, zero: true, allocMask: 0, zeroMask: full });
      return true;
    }
    if (placement.compressedSize > 0) {
      encodeCompressedL2(table, position, format, placement.offset, placement.compressedSize);
      return true;
    }
    const cluster = entry.hostOffset / this.clusterBytes;
    const references = entry.kind === 'compressed' ? this.plan.compressed.referencesAt(compressedNumber) : (this.plan.clusterReferences[cluster] ?? 2);
    // A cluster copied exactly keeps each entry's subcluster bits; any other was written whole.
    const verbatim = entry.kind === 'normal' && ((this.plan.clusterMarks[cluster] ?? 0) & MARK_VERBATIM) !== 0;
    const masks = verbatim ? { allocMask: entry.allocMask, zeroMask: entry.zeroMask } : { allocMask: full, zeroMask: 0 };
    encodeL2(table, position, format, { hostOffset: placement.offset, copied: references === 1, zero: false, ...masks });
    return true;
  }

  private dataPlacement(cluster: number): Placement {
    return { offset: this.dataOffset[cluster] ?? UNWRITTEN, compressedSize: this.dataCompressedSize[cluster] ?? 0 };
  }

  private compressedPlacement(number: number): Placement {
    return { offset: this.compressedOffset[number] ?? UNWRITTEN, compressedSize: this.compressedSize[number] ?? 0 };
  }

  /** The plan's number for the compressed data at `hostOffset` (the plan walked the same tables). */
  private compressedNumber(hostOffset: number): number {
    const number = this.plan.compressed.numberOf(hostOffset);
    if (number < 0) throw new Qcow2Error('INTERNAL', 'rewrite: a compressed cluster missing from the plan');
    return number;
  }

  // ---------------------------------------------------------------- a batch of distinct clusters

  /** Reads the batch's clusters, decides each one's form, compresses in parallel where asked, writes them in order. */
  private flushBatch(): void {
    this.job.throwIfCancelled();
    const items = this.batch.splice(0);
    this.readBatch(items);
    const forms = items.map((item, index) => this.formOf(item, this.slot(index)));
    const toCompress: number[] = [];
    forms.forEach((form, index) => {
      if (form === 'compress') toCompress.push(index);
    });
    const compressed = this.compressMany(toCompress);
    let compressedIndex = 0;
    // Each item's compressed bytes, or null where it is stored whole (or is zeros).
    const blobs = forms.map((form, index) => (form === 'keep-compressed' ? (items[index]?.stored ?? null) : form === 'compress' ? (compressed[compressedIndex++] ?? null) : null));
    const storedWhole = (index: number): boolean => forms[index] !== 'zero' && forms[index] !== 'unallocated' && blobs[index] === null;
    // Whole clusters first, then the byte-packed compressed data: mixed in guest order, every
    // cluster after a compressed run would start on a fresh cluster and leave the rest of one unused.
    for (let index = 0; index < items.length; index++) {
      const item = items[index];
      if (item === undefined || !storedWhole(index)) continue;
      // Clusters stored whole, side by side in the batch with the same reference count: one append
      // (large ones go to the file straight from the batch, uncopied).
      let end = index + 1;
      while (end < items.length && storedWhole(end) && items[end]?.references === item.references) end++;
      const run = this.batchBuffer.subarray(index * this.clusterBytes, end * this.clusterBytes);
      // Encrypted for where the run will lie: the next cluster of the new file.
      const expected = this.host.nextClusterOffset;
      this.options.luks?.cipher.encrypt(run, expected, item.guestOffset);
      const offset = this.host.appendClusters(run, item.references);
      if (offset !== expected) throw new Qcow2Error('INTERNAL', 'rewrite: data landed elsewhere than expected');
      for (let stored = index; stored < end; stored++) {
        const storedItem = items[stored];
        if (storedItem === undefined) continue;
        const storedAt = offset + (stored - index) * this.clusterBytes;
        this.place(storedItem, { offset: storedAt, compressedSize: 0 });
        // Data read from a plain cluster and stored as it was (not decompressed, not encrypted).
        if (!storedItem.compressed && this.copiesPlainData) this.options.earlyVerifier?.add(storedItem.key * this.clusterBytes, storedAt, 1);
      }
      this.result.storedClusters += end - index;
      index = end - 1;
    }
    for (let index = 0; index < items.length; index++) {
      const item = items[index];
      const form = forms[index];
      const bytes = blobs[index] ?? null;
      if (item === undefined) continue;
      if (form === 'zero' || form === 'unallocated') {
        this.place(item, { offset: form === 'zero' ? AS_ZERO : AS_UNALLOCATED, compressedSize: 0 });
        this.result.zeroClusters++;
        if (!item.compressed && this.copiesPlainData) this.options.earlyVerifier?.addZeros(item.key * this.clusterBytes, form === 'zero' ? OUTPUT_ZERO : OUTPUT_UNALLOCATED, 1);
      } else if (bytes !== null) {
        const offset = this.host.appendCompressed(bytes, item.references);
        this.place(item, { offset, compressedSize: bytes.length });
        this.result.compressedClusters++;
        if (this.copiesPlainData) this.handCompressedOver(item, form, offset, bytes.length);
      }
    }
    this.options.earlyVerifier?.publish(this.host.writtenEnd);
    this.doneClusters += items.length;
    this.job.progress('copying', this.doneClusters * this.clusterBytes, this.totalClusters * this.clusterBytes, 'bytes');
  }

  /** Compressed data just written, to the early comparison: a plain cluster compressed here, or compressed data kept as stored (not recompressed data). */
  private handCompressedOver(item: BatchItem, form: ReturnType<ImageWriter['formOf']> | undefined, offset: number, length: number): void {
    const verifier = this.options.earlyVerifier;
    if (verifier === undefined || verifier === null) return;
    if (form === 'compress' && !item.compressed) verifier.addCompressed(item.key * this.clusterBytes, offset, length);
    else if (form === 'keep-compressed') verifier.addKeptCompressed(this.plan.compressed.offsetAt(item.key), this.plan.compressed.sizeAt(item.key), offset, length);
  }

  private slot(index: number): Uint8Array {
    return this.batchBuffer.subarray(index * this.clusterBytes, (index + 1) * this.clusterBytes);
  }

  private place(item: BatchItem, placement: Placement): void {
    if (item.compressed) {
      this.compressedOffset[item.key] = placement.offset;
      this.compressedSize[item.key] = placement.compressedSize;
    } else {
      this.dataOffset[item.key] = placement.offset;
      this.dataCompressedSize[item.key] = placement.compressedSize;
    }
  }

  /** Fills each item's slot with its guest bytes (clusters back to back in the file in one read); compressed ones as stored too. */
  private readBatch(items: BatchItem[]): void {
    let index = 0;
    while (index < items.length) {
      const item = items[index];
      if (item === undefined) break;
      if (item.compressed) {
        item.stored = new Uint8Array(this.plan.compressed.sizeAt(item.key));
        this.readHost(this.plan.compressed.offsetAt(item.key), item.stored);
        index++;
        continue;
      }
      let end = index + 1;
      for (let next = items[end]; next !== undefined && !next.compressed && next.key === (items[end - 1]?.key ?? -2) + 1; next = items[end]) end++;
      // Zeros the file system holds as a hole need no read, nor a scan (formOf) where they become a zero entry.
      const run = items.slice(index, end);
      if (this.sourceHoles !== null && this.zeroForm !== 'stored' && run.every((runItem) => !runItem.verbatim) && withinHole(this.sourceHoles, item.key * this.clusterBytes, (item.key + run.length) * this.clusterBytes)) {
        for (const runItem of run) runItem.inHole = true;
        index = end;
        continue;
      }
      this.readHost(item.key * this.clusterBytes, this.batchBuffer.subarray(index * this.clusterBytes, end * this.clusterBytes));
      // An encrypted source's clusters, each for where it lies (compressed ones are stored plain).
      const cipher = this.source.cipher;
      for (let decrypted = index; cipher !== null && decrypted < end; decrypted++) {
        const decryptedItem = items[decrypted];
        if (decryptedItem !== undefined) cipher.decrypt(this.slot(decrypted), decryptedItem.key * this.clusterBytes, decryptedItem.guestOffset);
      }
      for (let partly = index; partly < end; partly++) {
        const allocMask = items[partly]?.allocMask ?? EVERY_SUBCLUSTER;
        if (allocMask !== EVERY_SUBCLUSTER) zeroUnallocatedSubclusters(this.slot(partly), allocMask);
      }
      index = end;
    }
  }

  private readHost(hostOffset: number, target: Uint8Array): void {
    const count = this.source.file.read(target, hostOffset);
    if (count < target.length) target.fill(0, count);
  }

  /** What an item becomes; decompresses compressed sources into their slot where their bytes are needed. */
  private formOf(item: BatchItem, slot: Uint8Array): 'store' | 'compress' | 'keep-compressed' | 'zero' | 'unallocated' {
    const policy = this.options.compression;
    const encrypted = this.options.luks !== null;
    if (item.verbatim) return 'store';
    if (item.inHole && this.zeroForm !== 'stored') return this.zeroForm;
    if (item.compressed && item.stored !== null) {
      const sameType = this.options.compressionType === this.source.header.compressionType;
      if (!encrypted && policy !== 'uncompress' && sameType) {
        // Kept as stored, without the rest of its last sector (padding, or the next cluster's start).
        const length = compressedStreamLength(this.source.header.compressionType, item.stored, this.clusterBytes);
        if (length > 0 && length < this.clusterBytes) {
          item.stored = item.stored.subarray(0, length);
          return 'keep-compressed';
        }
      }
      decompressCluster(this.source.header.compressionType, item.stored, this.clusterBytes, slot);
      item.stored = null;
    }
    if (isAllZero(slot) && this.zeroForm !== 'stored') return this.zeroForm;
    // A compressed cluster whose stored bytes could not be kept as they are (its sectors span a whole
    // cluster, as with 512-byte clusters, or another compression type) stays compressed, recompressed.
    const recompress = item.compressed && policy === 'keep';
    return (policy === 'compress' || recompress) && !encrypted ? 'compress' : 'store';
  }

  private compressMany(indices: number[]): (Uint8Array | null)[] {
    if (indices.length === 0) return [];
    // Compacting recompresses the odd cluster on this thread; compressing has its threads.
    const compressor = this.options.compressor ?? (this.inlineCompressor ??= inlineCompressor(this.options.compressionType, this.clusterBytes));
    // The compressor takes its input side by side, placed where its threads read it.
    const input = compressor.inputBuffer(indices.length);
    indices.forEach((index, position) => input.set(this.slot(index), position * this.clusterBytes));
    return compressor.compress(input, indices.length);
  }
}

/** Zeros the subclusters of an extended L2 cluster (32 to a cluster) outside `allocMask`: what they read. */
function zeroUnallocatedSubclusters(cluster: Uint8Array, allocMask: number): void {
  const subclusterBytes = cluster.length / 32;
  for (let subcluster = 0; subcluster < 32; subcluster++) {
    if (((allocMask >>> subcluster) & 1) === 0) cluster.fill(0, subcluster * subclusterBytes, (subcluster + 1) * subclusterBytes);
  }
}

