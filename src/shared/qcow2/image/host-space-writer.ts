/**
 * The host space of a new qcow2 file, written front to back: data clusters, compressed data and
 * tables are appended at the end through a staging buffer (so the disk sees large sequential
 * writes), each counted in the refcounts as it is claimed. A refcount block is appended as soon as
 * the space it describes is complete; the last blocks and the refcount table go at the very end
 * (finish). Regions reserved at the start (header, active L1) are written in place by the caller.
 *
 * Used by every writer of a whole new image (convert's stream writer, the rewrite). No crash
 * ordering is needed inside: the file is a temporary one (io/atomic-file.ts) until it is complete.
 */
import { alignedBytes } from '../io/aligned-bytes.ts';
import { hasDescriptor, type BlockFile } from '../io/block-file.ts';
import { startWriteback, WRITEBACK_STEP_BYTES } from '../io/file-writeback.ts';
import { Qcow2Error } from '../errors.ts';
import { alignUp, view } from '../format/bytes.ts';
import { isAllZero } from '../format/zeroes.ts';
import { encodeRefcountTableEntry, getRefcount, maxRefcount, setRefcount } from '../format/entries.ts';
import { MAX_REFTABLE_BYTES } from '../format/limits.ts';

const DEFAULT_STAGE_BYTES = 4 * 1024 * 1024;
/** Runs at least this long are written from the caller's buffer when nothing is staged before them. */
const DIRECT_WRITE_BYTES = 1024 * 1024;
/** The blocks a sparse file leaves unwritten where they are all zeros (qemu-img convert's default -S 4k). */
export const SPARSE_BLOCK_BYTES = 4096;

interface FinishedBlock {
  index: number;
  bytes: Uint8Array;
}

export interface HostSpaceLayout {
  clusterBits: number;
  refcountOrder: number;
}


export interface HostSpaceOptions {
  /**
   * Start the kernel's writeback of the appended bytes as they go (io/file-writeback.ts), for a
   * file that will be flushed at the end: the disk works during the rest of the job and the final
   * flush has less left to wait for. Only where the file has a descriptor.
   */
  startWriteback?: boolean;
  /**
   * The file is new and empty (it reads zeros wherever nothing is written): aligned 4 KiB blocks of
   * zeros are not written, so the file keeps holes where a cluster is partly zeros, as qemu-img
   * convert's output does, instead of taking disk space for them.
   */
  sparse?: boolean;
}

export interface RefcountStructure {
  tableOffset: number;
  tableClusters: number;
}

export class HostSpaceWriter {
  private readonly file: BlockFile;
  readonly clusterBytes: number;
  private readonly refcountOrder: number;
  /** The largest refcount the image's refcount width holds. */
  readonly refcountMax: number;
  /**
   * How many references compressed data packed into one host cluster may add up to: a third of
   * the width's largest count. Reverting to a snapshot adds as many references again as that
   * snapshot holds there before the old state's go (QEMU's and Cowbell's alike), and taking a
   * snapshot then adds them once more: a cluster packed up to the largest count (255 with 8-bit
   * refcounts) left the snapshots of a compressed disk impossible to revert to. With a third, any
   * snapshot can be reverted to and a new one taken; 16-bit refcounts (the default) never get near.
   */
  private readonly packingLimit: number;

  /** Next free host byte; the stage holds host bytes [stageStart, position) not yet written. */
  private position = 0;
  private stageStart = 0;
  private readonly stage: Uint8Array;

  private readonly entriesPerBlock: number;
  private block: Uint8Array;
  private blockView: DataView;
  private blockIndex = 0;
  private readonly finishedBlocks: FinishedBlock[] = [];
  private readonly blockOffsets: number[] = [];
  private finished = false;
  /** The descriptor whose writeback starts as the appends go, or null; and where the last start ended. */
  private readonly writebackDescriptor: number | null;
  private writebackFrom: number;
  private readonly sparse: boolean;

  /** `reservedBytes` at the start of the file (a whole number of clusters) are the caller's, counted once each. */
  constructor(file: BlockFile, layout: HostSpaceLayout, reservedBytes: number, options: HostSpaceOptions = {}, stageBytes = DEFAULT_STAGE_BYTES) {
    this.file = file;
    this.writebackDescriptor = options.startWriteback === true && hasDescriptor(file) ? file.descriptor : null;
    this.writebackFrom = reservedBytes;
    this.sparse = options.sparse === true;
    this.clusterBytes = 2 ** layout.clusterBits;
    this.refcountOrder = layout.refcountOrder;
    this.refcountMax = maxRefcount(layout.refcountOrder);
    this.packingLimit = compressedPackingLimit(layout.refcountOrder);
    this.stage = alignedBytes(Math.max(stageBytes, 2 * this.clusterBytes));
    this.entriesPerBlock = (this.clusterBytes * 8) / 2 ** layout.refcountOrder;
    this.block = new Uint8Array(this.clusterBytes);
    this.blockView = view(this.block);
    if (reservedBytes % this.clusterBytes !== 0) throw new Qcow2Error('INTERNAL', 'host space: reserved bytes are not whole clusters');
    this.claim(0, reservedBytes, 1);
    this.position = reservedBytes;
    this.stageStart = reservedBytes;
    // A large reserved area can fill whole refcount blocks' ranges by itself.
    this.placeFinishedBlocks();
  }

  /** The next free host byte. */
  get end(): number {
    return this.position;
  }

  /** Where the next appendClusters will land (after padding to a cluster boundary). */
  get nextClusterOffset(): number {
    return alignUp(this.position, this.clusterBytes);
  }

  /** Everything appended before this offset is in the file (the rest is still staged). */
  get writtenEnd(): number {
    return this.stageStart;
  }

  /** Appends whole clusters, each referenced `references` times; returns their host offset. */
  appendClusters(bytes: Uint8Array, references = 1): number {
    if (bytes.length === 0 || bytes.length % this.clusterBytes !== 0) throw new Qcow2Error('INTERNAL', 'host space: data is not a whole number of clusters');
    this.assertOpen();
    this.padToCluster();
    const hostOffset = this.position;
    this.claim(hostOffset, bytes.length, references);
    this.append(bytes);
    this.placeFinishedBlocks();
    return hostOffset;
  }

  /**
   * Appends compressed bytes right after the previous ones (byte granular, as QEMU packs them);
   * each host cluster they touch gains `references`. Starts a new cluster when the current one's
   * refcount could not take them. Returns the host byte offset.
   */
  appendCompressed(bytes: Uint8Array, references = 1): number {
    if (bytes.length === 0 || bytes.length >= this.clusterBytes) throw new Qcow2Error('INTERNAL', 'host space: compressed data must be smaller than a cluster');
    this.assertOpen();
    if (this.position % this.clusterBytes !== 0 && this.refcountAt(Math.floor(this.position / this.clusterBytes)) + references > this.packingLimit) this.padToCluster();
    const hostOffset = this.position;
    this.claim(hostOffset, bytes.length, references);
    this.append(bytes);
    this.placeFinishedBlocks();
    return hostOffset;
  }

  /**
   * Writes the last refcount blocks and the refcount table (sized so the blocks describe every
   * cluster including themselves and the table), and everything still staged.
   */
  finish(): RefcountStructure {
    this.assertOpen();
    this.finished = true;
    this.padToCluster();
    const structure = this.writeRefcountStructures();
    this.flushStage();
    // Zeros left unwritten at the very end would leave the file short of its last cluster.
    if (this.sparse && this.file.size() < this.position) this.file.truncate(this.position);
    return structure;
  }

  private assertOpen(): void {
    if (this.finished) throw new Qcow2Error('INTERNAL', 'host space: used after finish');
  }

  // ---------------------------------------------------------------- appending

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
      this.writeOut(bytes, this.position);
      this.position += bytes.length;
      this.stageStart = this.position;
      this.wrote();
      return;
    }
    this.stage.set(bytes, this.position - this.stageStart);
    this.position += bytes.length;
  }

  private flushStage(): void {
    const used = this.position - this.stageStart;
    if (used > 0) this.writeOut(this.stage.subarray(0, used), this.stageStart);
    this.stageStart = this.position;
    this.wrote();
  }

  /** Writes `bytes` at `position`; in a sparse file, all but the aligned blocks of zeros among them. */
  private writeOut(bytes: Uint8Array, position: number): void {
    if (!this.sparse) {
      this.file.write(bytes, position);
      return;
    }
    const end = position + bytes.length;
    // The bytes from `pending` on are still to be written (up to the next block of zeros).
    let pending = position;
    for (let block = alignUp(position, SPARSE_BLOCK_BYTES); block + SPARSE_BLOCK_BYTES <= end; block += SPARSE_BLOCK_BYTES) {
      const at = block - position;
      if (bytes[at] !== 0 || bytes[at + SPARSE_BLOCK_BYTES - 1] !== 0 || !isAllZero(bytes.subarray(at, at + SPARSE_BLOCK_BYTES))) continue;
      if (block > pending) this.file.write(bytes.subarray(pending - position, at), pending);
      pending = block + SPARSE_BLOCK_BYTES;
    }
    if (end > pending) this.file.write(bytes.subarray(pending - position), pending);
  }

  /** Starts the writeback of what was appended since the last start, every WRITEBACK_STEP_BYTES. */
  private wrote(): void {
    if (this.writebackDescriptor === null || this.stageStart - this.writebackFrom < WRITEBACK_STEP_BYTES) return;
    startWriteback(this.writebackDescriptor, this.writebackFrom, this.stageStart - this.writebackFrom);
    this.writebackFrom = this.stageStart;
  }

  // ---------------------------------------------------------------- refcounts

  /** Counts `references` to each host cluster that [hostOffset, hostOffset + length) touches. */
  private claim(hostOffset: number, length: number, references: number): void {
    if (length <= 0) return;
    const first = Math.floor(hostOffset / this.clusterBytes);
    const last = Math.floor((hostOffset + length - 1) / this.clusterBytes);
    for (let cluster = first; cluster <= last; cluster++) this.addReferences(cluster, references);
  }

  private addReferences(cluster: number, references: number): void {
    const index = Math.floor(cluster / this.entriesPerBlock);
    if (index < this.blockIndex) throw new Qcow2Error('INTERNAL', 'host space: clusters claimed out of order');
    // Host space only grows: once a cluster of the next block's range is used, this block is final.
    while (index > this.blockIndex) {
      this.finishedBlocks.push({ index: this.blockIndex, bytes: this.block });
      this.block = new Uint8Array(this.clusterBytes);
      this.blockView = view(this.block);
      this.blockIndex++;
    }
    const slot = cluster % this.entriesPerBlock;
    const value = getRefcount(this.block, this.blockView, slot, this.refcountOrder) + references;
    if (value > this.refcountMax) throw new Qcow2Error('INTERNAL', `host space: refcount of cluster ${cluster} overflows`);
    setRefcount(this.block, this.blockView, slot, this.refcountOrder, value);
  }

  private refcountAt(cluster: number): number {
    if (Math.floor(cluster / this.entriesPerBlock) !== this.blockIndex) return 0;
    return getRefcount(this.block, this.blockView, cluster % this.entriesPerBlock, this.refcountOrder);
  }

  /** Appends refcount blocks whose range is complete; placing one may complete another. */
  private placeFinishedBlocks(): void {
    for (let finished = this.finishedBlocks.shift(); finished !== undefined; finished = this.finishedBlocks.shift()) {
      this.padToCluster();
      const hostOffset = this.position;
      this.claim(hostOffset, this.clusterBytes, 1);
      this.append(finished.bytes);
      this.blockOffsets[finished.index] = hostOffset;
    }
  }

  private writeRefcountStructures(): RefcountStructure {
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
    this.claim(this.position, (blocks + tableClusters) * this.clusterBytes, 1);
    const open = [...this.finishedBlocks.splice(0), { index: this.blockIndex, bytes: this.block }];
    if (open.length !== blocks) throw new Qcow2Error('INTERNAL', 'host space: refcount block count mismatch');
    for (const block of open) {
      this.blockOffsets[block.index] = this.position;
      this.append(block.bytes);
    }
    const table = new Uint8Array(tableClusters * this.clusterBytes);
    const tableView = view(table);
    for (let index = 0; index < this.blockOffsets.length; index++) {
      const offset = this.blockOffsets[index];
      if (offset === undefined) throw new Qcow2Error('INTERNAL', `host space: refcount block ${index} was never placed`);
      encodeRefcountTableEntry(tableView, index * 8, offset);
    }
    const tableOffset = this.position;
    this.append(table);
    return { tableOffset, tableClusters };
  }
}

/** How many references compressed data packed into one host cluster may add up to (HostSpaceWriter's packingLimit: a third of the largest count). */
export function compressedPackingLimit(refcountOrder: number): number {
  const largest = maxRefcount(refcountOrder);
  return largest >= 3 ? Math.floor(largest / 3) : largest;
}
