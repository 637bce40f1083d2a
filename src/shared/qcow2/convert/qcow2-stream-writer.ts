/**
 * Writes a new qcow2 image front to back in one pass (convert's output). Guest clusters arrive in
 * increasing order; their data, compressed data and L2 tables are appended to the host space
 * (image/host-space-writer.ts, which also places the refcount blocks). The L1 table and the
 * header, whose places are reserved at the start, are written last.
 *
 * Layout: header | L1 | data, L2 tables and refcount blocks as they fill | last refcount blocks |
 * refcount table. Every cluster up to the end is used, so each refcount is 1 except where several
 * compressed clusters share a host cluster.
 */
import type { BlockFile } from '../io/block-file.ts';
import type { ResolvedCreateOptions } from '../image/create.ts';
import { newImageHeader } from '../image/create.ts';
import { HostSpaceWriter } from '../image/host-space-writer.ts';
import { Qcow2Error } from '../errors.ts';
import { view } from '../format/bytes.ts';
import { encodeCompressedL2, encodeL1, encodeL2, type L2Format } from '../format/entries.ts';
import { serializeHeaderArea } from '../format/header.ts';

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
  private readonly host: HostSpaceWriter;

  private readonly l2: { index: number; used: boolean; bytes: Uint8Array; view: DataView } = { index: -1, used: false, bytes: new Uint8Array(0), view: new DataView(new ArrayBuffer(0)) };
  private nextGuestCluster = 0;
  private finished = false;

  constructor(file: BlockFile, options: ResolvedCreateOptions, stageBytes?: number) {
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
    // The header cluster and the L1 table: written by finish().
    const reserved = this.clusterBytes * (1 + Math.ceil(this.l1.length / this.clusterBytes));
    this.host = new HostSpaceWriter(file, { clusterBits: options.clusterBits, refcountOrder: options.refcountOrder }, reserved, {}, stageBytes);
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
      const hostOffset = this.host.appendClusters(data.subarray(done * this.clusterBytes, (done + piece) * this.clusterBytes));
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
      done += piece;
    }
  }

  /** Stores one guest cluster as compressed bytes, packed after the previous compressed cluster. */
  writeCompressed(guestCluster: number, compressed: Uint8Array): void {
    if (compressed.length === 0 || compressed.length >= this.clusterBytes) throw new Qcow2Error('INTERNAL', 'stream writer: compressed data must be smaller than a cluster');
    this.advanceTo(guestCluster, 1);
    this.useL2For(guestCluster);
    const hostOffset = this.host.appendCompressed(compressed);
    encodeCompressedL2(this.l2.view, (guestCluster % this.l2Entries) * this.l2EntryBytes, this.l2Format, hostOffset, compressed.length);
    this.l2.used = true;
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
    const refcounts = this.host.finish();
    if (this.l1.length > 0) this.file.write(this.l1, this.clusterBytes);
    const header = newImageHeader(this.options, {
      l1Size: this.l1Size,
      l1TableOffset: this.l1Size > 0 ? this.clusterBytes : 0,
      refcountTableOffset: refcounts.tableOffset,
      refcountTableClusters: refcounts.tableClusters,
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
      const hostOffset = this.host.appendClusters(this.l2.bytes);
      encodeL1(this.l1View, this.l2.index * 8, hostOffset, true);
    }
    this.l2.bytes.fill(0);
    this.l2.used = false;
  }
}
