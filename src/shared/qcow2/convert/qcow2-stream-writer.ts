/**
 * Writes a new qcow2 image front to back in one pass (convert's output). Guest clusters arrive in
 * increasing order; their data, compressed data, L2 tables and refcount blocks are appended to the
 * end of the file through a staging buffer, so the disk sees large sequential writes. The L1
 * table and the header, whose places are reserved at the start, are written last.
 *
 * Layout: header | L1 | data, L2 tables and refcount blocks as they fill | last refcount blocks |
 * refcount table. Every cluster up to the end is used, so each refcount is 1 except where several
 * compressed clusters share a host cluster.
 *
 * No crash ordering is needed inside: the file is a temporary one (writeFileAtomically) until it
 * is complete.
 */
import { alignedBytes } from '../io/aligned-bytes.ts';
import type { BlockFile } from '../io/block-file.ts';
import type { ResolvedCreateOptions } from '../image/create.ts';
import { newImageHeader } from '../image/create.ts';
import { Qcow2Error } from '../errors.ts';
import { alignUp, view } from '../format/bytes.ts';
import { encodeCompressedL2, encodeL1, encodeL2, encodeRefcountTableEntry, getRefcount, maxRefcount, setRefcount, type L2Format } from '../format/entries.ts';
import { serializeHeaderArea } from '../format/header.ts';
import { MAX_REFTABLE_BYTES } from '../format/limits.ts';

const DEFAULT_STAGE_BYTES = 4 * 1024 * 1024;
/** Runs at least this long are written from the caller's buffer when nothing is staged before them. */
const DIRECT_WRITE_BYTES = 1024 * 1024;

interface FinishedBlock {
  index: number;
  bytes: Uint8Array;
}

export class Qcow2StreamWriter {
  private readonly file: BlockFile;
  private readonly options: ResolvedCreateOptions;
  readonly clusterBytes: number;
  private readonly l2Format: L2Format;
  private readonly l2EntryBytes: number;
  private readonly l2Entries: number;
  private readonly l1Size: number;
  private readonly l1: Uint8Array;
  private readonly l1View: DataView;

  private readonly l2: { index: number; used: boolean; bytes: Uint8Array; view: DataView } = { index: -1, used: false, bytes: new Uint8Array(0), view: new DataView(new ArrayBuffer(0)) };
  private nextGuestCluster = 0;

  /** Next free host byte; the stage holds host bytes [stageStart, position) not yet written. */
  private position = 0;
  private stageStart = 0;
  private readonly stage: Uint8Array;

  private readonly entriesPerBlock: number;
  private readonly refcountMax: number;
  private block: Uint8Array;
  private blockView: DataView;
  private blockIndex = 0;
  private readonly finishedBlocks: FinishedBlock[] = [];
  private readonly blockOffsets: number[] = [];
  private refcountTableOffset = 0;
  private refcountTableClusters = 0;
  private finished = false;

  constructor(file: BlockFile, options: ResolvedCreateOptions, stageBytes = DEFAULT_STAGE_BYTES) {
    this.file = file;
    this.options = options;
    this.clusterBytes = 2 ** options.clusterBits;
    this.l2Format = { clusterBits: options.clusterBits, extendedL2: options.extendedL2 };
    this.l2EntryBytes = options.extendedL2 ? 16 : 8;
    this.l2Entries = this.clusterBytes / this.l2EntryBytes;
    this.l1Size = Math.ceil(options.size / (this.l2Entries * this.clusterBytes));
    this.l1 = new Uint8Array(this.l1Size * 8);
    this.l1View = view(this.l1);
    this.l2.bytes = new Uint8Array(this.clusterBytes);
    this.l2.view = view(this.l2.bytes);
    this.stage = alignedBytes(Math.max(stageBytes, 2 * this.clusterBytes));
    this.entriesPerBlock = (this.clusterBytes * 8) / 2 ** options.refcountOrder;
    this.refcountMax = maxRefcount(options.refcountOrder);
    this.block = new Uint8Array(this.clusterBytes);
    this.blockView = view(this.block);
    // The header cluster and the L1 table: written by finish().
    const reserved = this.clusterBytes * (1 + Math.ceil(this.l1.length / this.clusterBytes));
    this.claim(0, reserved);
    this.position = reserved;
    this.stageStart = reserved;
    // A large L1 table can fill whole refcount blocks' ranges by itself.
    this.placeFinishedBlocks();
  }

  get guestClusters(): number {
    return Math.ceil(this.options.size / this.clusterBytes);
  }

  /** Stores `data` (a whole number of clusters) as guest clusters from `guestCluster` on. */
  writeData(guestCluster: number, data: Uint8Array): void {
    const count = data.length / this.clusterBytes;
    if (!Number.isInteger(count) || count < 1) throw new Qcow2Error('INTERNAL', 'stream writer: data is not a whole number of clusters');
    this.advanceTo(guestCluster, count);
    let done = 0;
    while (done < count) {
      const cluster = guestCluster + done;
      const piece = Math.min(count - done, this.l2Entries - (cluster % this.l2Entries));
      this.useL2For(cluster);
      this.padToCluster();
      const hostOffset = this.position;
      this.claim(hostOffset, piece * this.clusterBytes);
      this.append(data.subarray(done * this.clusterBytes, (done + piece) * this.clusterBytes));
      for (let index = 0; index < piece; index++) {
        encodeL2(this.l2.view, ((cluster + index) % this.l2Entries) * this.l2EntryBytes, this.l2Format, {
          hostOffset: hostOffset + index * this.clusterBytes,
          copied: true,
          zero: false,
          allocMask: 0xffffffff,
          zeroMask: 0,
        });
      }
      this.l2.used = true;
      this.placeFinishedBlocks();
      done += piece;
    }
  }

  /** Stores one guest cluster as compressed bytes, packed after the previous compressed cluster. */
  writeCompressed(guestCluster: number, compressed: Uint8Array): void {
    if (compressed.length === 0 || compressed.length >= this.clusterBytes) throw new Qcow2Error('INTERNAL', 'stream writer: compressed data must be smaller than a cluster');
    this.advanceTo(guestCluster, 1);
    this.useL2For(guestCluster);
    // A host cluster shared by compressed clusters holds one reference per cluster: at most the refcount maximum.
    if (this.position % this.clusterBytes !== 0 && this.refcountAt(Math.floor(this.position / this.clusterBytes)) >= this.refcountMax) this.padToCluster();
    const hostOffset = this.position;
    this.claim(hostOffset, compressed.length);
    this.append(compressed);
    encodeCompressedL2(this.l2.view, (guestCluster % this.l2Entries) * this.l2EntryBytes, this.l2Format, hostOffset, compressed.length);
    this.l2.used = true;
    this.placeFinishedBlocks();
  }

  /** Marks one guest cluster as reading zeros (compat 1.1 only): it hides the backing file's data. */
  writeZero(guestCluster: number): void {
    if (this.options.version !== 3) throw new Qcow2Error('INTERNAL', 'stream writer: zero clusters need compat 1.1');
    this.advanceTo(guestCluster, 1);
    this.useL2For(guestCluster);
    encodeL2(this.l2.view, (guestCluster % this.l2Entries) * this.l2EntryBytes, this.l2Format, { hostOffset: 0, copied: false, zero: true, allocMask: 0, zeroMask: 0xffffffff });
    this.l2.used = true;
  }

  /** Writes the last L2 table, the refcount structures, the L1 table and the header. */
  finish(): void {
    if (this.finished) throw new Qcow2Error('INTERNAL', 'stream writer: finished twice');
    this.finished = true;
    this.finishL2();
    this.padToCluster();
    this.writeRefcountStructures();
    this.flushStage();
    if (this.l1.length > 0) this.file.write(this.l1, this.clusterBytes);
    const header = newImageHeader(this.options, {
      l1Size: this.l1Size,
      l1TableOffset: this.l1Size > 0 ? this.clusterBytes : 0,
      refcountTableOffset: this.refcountTableOffset,
      refcountTableClusters: this.refcountTableClusters,
    });
    this.file.write(serializeHeaderArea(header), 0);
  }

  private advanceTo(guestCluster: number, count: number): void {
    if (this.finished || guestCluster < this.nextGuestCluster || guestCluster + count > this.guestClusters) {
      throw new Qcow2Error('INTERNAL', `stream writer: guest cluster ${guestCluster} out of order or past the disk`);
    }
    this.nextGuestCluster = guestCluster + count;
  }

  /** Makes the L2 table covering `guestCluster` the current one, writing out the previous one. */
  private useL2For(guestCluster: number): void {
    const l1Index = Math.floor(guestCluster / this.l2Entries);
    if (l1Index === this.l2.index) return;
    this.finishL2();
    this.l2.index = l1Index;
  }

  private finishL2(): void {
    if (this.l2.used) {
      this.padToCluster();
      const hostOffset = this.position;
      this.claim(hostOffset, this.clusterBytes);
      this.append(this.l2.bytes);
      encodeL1(this.l1View, this.l2.index * 8, hostOffset, true);
      this.placeFinishedBlocks();
    }
    this.l2.bytes.fill(0);
    this.l2.used = false;
  }

  // ---------------------------------------------------------------- host space

  private padToCluster(): void {
    const padding = alignUp(this.position, this.clusterBytes) - this.position;
    if (padding === 0) return;
    if (this.position - this.stageStart + padding > this.stage.length) this.flushStage();
    const at = this.position - this.stageStart;
    this.stage.fill(0, at, at + padding);
    this.position += padding;
  }

  /** Appends bytes at `position` (already claimed). Large runs go straight to the file, uncopied. */
  private append(bytes: Uint8Array): void {
    if (bytes.length >= DIRECT_WRITE_BYTES || this.position - this.stageStart + bytes.length > this.stage.length) this.flushStage();
    if (bytes.length >= DIRECT_WRITE_BYTES) {
      this.file.write(bytes, this.position);
      this.position += bytes.length;
      this.stageStart = this.position;
      return;
    }
    this.stage.set(bytes, this.position - this.stageStart);
    this.position += bytes.length;
  }

  private flushStage(): void {
    const used = this.position - this.stageStart;
    if (used > 0) this.file.write(this.stage.subarray(0, used), this.stageStart);
    this.stageStart = this.position;
  }

  // ---------------------------------------------------------------- refcounts

  /** Counts one reference to each host cluster that [hostOffset, hostOffset + length) touches. */
  private claim(hostOffset: number, length: number): void {
    const first = Math.floor(hostOffset / this.clusterBytes);
    const last = Math.floor((hostOffset + length - 1) / this.clusterBytes);
    for (let cluster = first; cluster <= last; cluster++) this.addReference(cluster);
  }

  private addReference(cluster: number): void {
    const index = Math.floor(cluster / this.entriesPerBlock);
    if (index < this.blockIndex) throw new Qcow2Error('INTERNAL', 'stream writer: host clusters claimed out of order');
    // Host space only grows: once a cluster of the next block's range is used, this block is final.
    while (index > this.blockIndex) {
      this.finishedBlocks.push({ index: this.blockIndex, bytes: this.block });
      this.block = new Uint8Array(this.clusterBytes);
      this.blockView = view(this.block);
      this.blockIndex++;
    }
    const slot = cluster % this.entriesPerBlock;
    const value = getRefcount(this.block, this.blockView, slot, this.options.refcountOrder) + 1;
    if (value > this.refcountMax) throw new Qcow2Error('INTERNAL', `stream writer: refcount of cluster ${cluster} overflows`);
    setRefcount(this.block, this.blockView, slot, this.options.refcountOrder, value);
  }

  private refcountAt(cluster: number): number {
    if (Math.floor(cluster / this.entriesPerBlock) !== this.blockIndex) return 0;
    return getRefcount(this.block, this.blockView, cluster % this.entriesPerBlock, this.options.refcountOrder);
  }

  /** Appends refcount blocks whose range is complete; placing one may complete another. */
  private placeFinishedBlocks(): void {
    for (let finished = this.finishedBlocks.shift(); finished !== undefined; finished = this.finishedBlocks.shift()) {
      this.padToCluster();
      const hostOffset = this.position;
      this.claim(hostOffset, this.clusterBytes);
      this.append(finished.bytes);
      this.blockOffsets[finished.index] = hostOffset;
    }
  }

  /**
   * The blocks still open and the refcount table go at the end, sized so that the blocks
   * describe every cluster including themselves and the table, and the table names every block.
   */
  private writeRefcountStructures(): void {
    const firstFree = this.position / this.clusterBytes;
    let blocks = 1;
    let tableClusters = 1;
    for (;;) {
      const lastBlock = Math.floor((firstFree + blocks + tableClusters - 1) / this.entriesPerBlock);
      const neededBlocks = lastBlock - this.blockIndex + 1;
      const neededTable = Math.max(1, Math.ceil(((lastBlock + 1) * 8) / this.clusterBytes));
      if (neededBlocks <= blocks && neededTable <= tableClusters) break;
      blocks = Math.max(blocks, neededBlocks);
      tableClusters = Math.max(tableClusters, neededTable);
    }
    if (tableClusters * this.clusterBytes > MAX_REFTABLE_BYTES) throw new Qcow2Error('NO_SPACE', 'The image would need a larger refcount table than qcow2 allows; use larger clusters');
    this.claim(this.position, (blocks + tableClusters) * this.clusterBytes);
    const open = [...this.finishedBlocks.splice(0), { index: this.blockIndex, bytes: this.block }];
    if (open.length !== blocks) throw new Qcow2Error('INTERNAL', 'stream writer: refcount block count mismatch');
    for (const block of open) {
      this.blockOffsets[block.index] = this.position;
      this.append(block.bytes);
    }
    const table = new Uint8Array(tableClusters * this.clusterBytes);
    const tableView = view(table);
    for (let index = 0; index < this.blockOffsets.length; index++) {
      const offset = this.blockOffsets[index];
      if (offset === undefined) throw new Qcow2Error('INTERNAL', `stream writer: refcount block ${index} was never placed`);
      encodeRefcountTableEntry(tableView, index * 8, offset);
    }
    this.refcountTableOffset = this.position;
    this.refcountTableClusters = tableClusters;
    this.append(table);
  }
}
