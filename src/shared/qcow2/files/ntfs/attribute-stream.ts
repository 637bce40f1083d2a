/**
 * The bytes of one attribute (a file's $DATA, an index's allocation, the MFT itself): a resident
 * value, or data runs gathered from every extent of a non-resident attribute. Reads stay inside the
 * runs; bytes past the initialized size and in sparse runs read as zeros. A compressed attribute
 * is read a compression unit at a time: a unit whose clusters are all stored is plain, one with
 * none is zeros, one with fewer is LZNT1 in its stored clusters.
 */

/** Compression units above this are not NTFS's (16 clusters of at most 4 KiB); refused rather than allocated. */
const MAX_COMPRESSION_UNIT_BYTES = 1024 * 1024;
import { Qcow2Error } from '../../errors.ts';
import type { ByteRange, VolumeBytes } from '../filesystem.ts';
import { corrupt } from './bytes.ts';
import { decompressLznt1 } from './lznt1.ts';
import { ATTRIBUTE_COMPRESSED, ATTRIBUTE_ENCRYPTED, type Attribute, type NonResidentAttribute } from './mft-record.ts';
import type { DataRun } from './runlist.ts';

export class AttributeStream {
  readonly size: number;
  private readonly resident: Uint8Array | null;
  private readonly runs: readonly DataRun[];
  private readonly initializedSize: number;
  /** Why the content cannot be read (encrypted, an unknown compression), or null. */
  readonly unsupported: string | null;
  /** Clusters per compression unit, or 0 when the attribute is not compressed. */
  private readonly unitClusters: number;
  private cachedUnit: { index: number; bytes: Uint8Array } | null = null;

  private readonly volume: VolumeBytes;
  private readonly clusterSize: number;

  private constructor(
    volume: VolumeBytes,
    clusterSize: number,
    fields: { size: number; resident: Uint8Array | null; runs: readonly DataRun[]; initializedSize: number; unsupported: string | null; unitClusters?: number },
  ) {
    this.unitClusters = fields.unitClusters ?? 0;
    this.volume = volume;
    this.clusterSize = clusterSize;
    this.size = fields.size;
    this.resident = fields.resident;
    this.runs = fields.runs;
    this.initializedSize = fields.initializedSize;
    this.unsupported = fields.unsupported;
  }

  /** One attribute from its extents (a resident attribute has one; a non-resident one may be split across records). */
  static fromExtents(volume: VolumeBytes, clusterSize: number, extents: readonly Attribute[], what: string): AttributeStream {
    const first = extents[0];
    if (first === undefined) throw corrupt(`${what}: no attribute extents`);
    const compressed = (first.flags & ATTRIBUTE_COMPRESSED) !== 0;
    const encrypted = (first.flags & ATTRIBUTE_ENCRYPTED) !== 0;
    if (first.resident) {
      // A resident value is never compressed, whatever the flag says.
      const unsupported = encrypted ? 'encrypted (EFS)' : null;
      if (extents.length > 1) throw corrupt(`${what}: a resident attribute in ${extents.length} extents`);
      return new AttributeStream(volume, clusterSize, {
        size: first.value.length,
        resident: first.value,
        runs: [],
        initializedSize: first.value.length,
        unsupported,
      });
    }
    const nonResident = extents.filter((extent): extent is NonResidentAttribute => !extent.resident);
    if (nonResident.length !== extents.length) throw corrupt(`${what}: resident and non-resident extents mixed`);
    const ordered = nonResident.sort((a, b) => a.firstVcn - b.firstVcn);
    const runs: DataRun[] = [];
    let nextVcn = 0;
    for (const extent of ordered) {
      if (extent.firstVcn !== nextVcn) throw corrupt(`${what}: an extent starts at VCN ${extent.firstVcn}, expected ${nextVcn}`);
      runs.push(...extent.runs);
      nextVcn = extent.lastVcn + 1;
    }
    const head = ordered[0]!;
    const unitClusters = compressed ? 2 ** head.compressionUnit : 0;
    const unsupported = encrypted
      ? 'encrypted (EFS)'
      : compressed && (head.compressionUnit === 0 || head.compressionUnit > 16 || unitClusters * clusterSize > MAX_COMPRESSION_UNIT_BYTES)
        ? `compressed in units of 2^${head.compressionUnit} clusters`
        : null;
    if (head.dataSize > nextVcn * clusterSize) throw corrupt(`${what}: ${head.dataSize} bytes in ${nextVcn} clusters`);
    return new AttributeStream(volume, clusterSize, {
      size: head.dataSize,
      resident: null,
      runs,
      initializedSize: head.initializedSize,
      unsupported,
      unitClusters,
    });
  }

  /** Up to buffer.length bytes from offset; the count read (0 at the end). */
  async read(buffer: Uint8Array, offset: number, what: string): Promise<number> {
    if (this.unsupported !== null) throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `NTFS: ${what} is ${this.unsupported}; Cowbell does not read such files`);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Qcow2Error('INVALID_ARGUMENT', `NTFS: read offset ${offset}`);
    const count = Math.max(0, Math.min(buffer.length, this.size - offset));
    if (this.resident !== null) {
      buffer.set(this.resident.subarray(offset, offset + count));
      return count;
    }
    if (this.unitClusters > 0) return this.readCompressed(buffer.subarray(0, count), offset, what);
    let done = 0;
    while (done < count) {
      const position = offset + done;
      const target = buffer.subarray(done, count);
      if (position >= this.initializedSize) {
        target.fill(0);
        break;
      }
      const run = this.runAt(Math.floor(position / this.clusterSize), what);
      const runEnd = (run.vcn + run.clusters) * this.clusterSize;
      const length = Math.min(target.length, runEnd - position, this.initializedSize - position);
      const piece = target.subarray(0, length);
      if (run.lcn === null) piece.fill(0);
      else await this.volume.read(piece, run.lcn * this.clusterSize + (position - run.vcn * this.clusterSize));
      done += length;
    }
    return count;
  }

  private async readCompressed(target: Uint8Array, offset: number, what: string): Promise<number> {
    const unitBytes = this.unitClusters * this.clusterSize;
    let done = 0;
    while (done < target.length) {
      const position = offset + done;
      const unitIndex = Math.floor(position / unitBytes);
      const unit = await this.compressionUnit(unitIndex, what);
      const within = position - unitIndex * unitBytes;
      const length = Math.min(target.length - done, unitBytes - within);
      target.set(unit.subarray(within, within + length), done);
      done += length;
    }
    if (this.initializedSize < offset + target.length) target.fill(0, Math.max(0, this.initializedSize - offset));
    return target.length;
  }

  /** One compression unit's content: stored plain, all sparse (zeros), or LZNT1 in its stored clusters. */
  private async compressionUnit(unitIndex: number, what: string): Promise<Uint8Array> {
    if (this.cachedUnit?.index === unitIndex) return this.cachedUnit.bytes;
    const firstVcn = unitIndex * this.unitClusters;
    const endVcn = firstVcn + this.unitClusters;
    const stored: { lcn: number; clusters: number }[] = [];
    let storedClusters = 0;
    for (let vcn = firstVcn; vcn < endVcn; ) {
      const run = this.runAt(vcn, what);
      const clusters = Math.min(run.vcn + run.clusters, endVcn) - vcn;
      if (run.lcn !== null) {
        stored.push({ lcn: run.lcn + (vcn - run.vcn), clusters });
        storedClusters += clusters;
      }
      vcn += clusters;
    }
    const unit = new Uint8Array(this.unitClusters * this.clusterSize);
    if (storedClusters > 0) {
      const source = storedClusters === this.unitClusters ? unit : new Uint8Array(storedClusters * this.clusterSize);
      let position = 0;
      for (const piece of stored) {
        await this.volume.read(source.subarray(position, position + piece.clusters * this.clusterSize), piece.lcn * this.clusterSize);
        position += piece.clusters * this.clusterSize;
      }
      if (source !== unit) decompressLznt1(source, unit, `${what} compression unit ${unitIndex}`);
    }
    this.cachedUnit = { index: unitIndex, bytes: unit };
    return unit;
  }

  /**
   * The parts of the content (offsets in it) that may hold other than zeros: its allocated runs up
   * to what is initialized; null where that is not told by runs (resident, compressed, unsupported).
   */
  dataRanges(): ByteRange[] | null {
    if (this.resident !== null || this.unitClusters > 0 || this.unsupported !== null) return null;
    const end = Math.min(this.size, this.initializedSize);
    const ranges: ByteRange[] = [];
    for (const run of this.runs) {
      const start = run.vcn * this.clusterSize;
      if (start >= end) break;
      if (run.lcn === null) continue;
      ranges.push({ offset: start, length: Math.min(run.clusters * this.clusterSize, end - start) });
    }
    return ranges;
  }

  /** Where the content lies in the volume (sparse runs hold none), or null for a resident value. */
  extents(): ByteRange[] | null {
    if (this.resident !== null) return null;
    const end = Math.ceil(this.size / this.clusterSize);
    const ranges: ByteRange[] = [];
    for (const run of this.runs) {
      if (run.vcn >= end) break;
      if (run.lcn === null) continue;
      const clusters = Math.min(run.clusters, end - run.vcn);
      ranges.push({ offset: run.lcn * this.clusterSize, length: clusters * this.clusterSize });
    }
    return ranges;
  }

  private runAt(vcn: number, what: string): DataRun {
    let low = 0;
    let high = this.runs.length - 1;
    while (low <= high) {
      const middle = (low + high) >> 1;
      const run = this.runs[middle] as DataRun;
      if (vcn < run.vcn) high = middle - 1;
      else if (vcn >= run.vcn + run.clusters) low = middle + 1;
      else return run;
    }
    throw corrupt(`${what}: no data run holds cluster ${vcn} of its ${this.size} bytes`);
  }
}
