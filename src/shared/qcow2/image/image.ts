/**
 * An open qcow2 image: its header, active L1 table, refcounts and snapshot table, guest reads
 * through any L1 table (active or a snapshot's), and guest writes with copy-on-write.
 *
 * Crash-safety order (see flush()): data and refcount increments, then L2 tables, then L1
 * entries, then refcount decrements, with a flush between each step that depends on the last.
 */
import * as path from 'node:path';
import type { BlockFile } from '../io/block-file.ts';
import { NodeBlockFile } from '../io/block-file.ts';
import { decompressCluster } from '../codec/compression.ts';
import { namingFile, Qcow2Error } from '../errors.ts';
import { BITMAPS_READ_ONLY_REASON } from '../model.ts';
import { sameFile } from '../io/file-identity.ts';
import { FailStopFile } from '../io/fail-stop-file.ts';
import { IN_USE_REASON, inUseError, refuseIfWrittenElsewhere, type RefuseInUse } from '../io/image-lock.ts';
import { hex, isAligned, view } from '../format/bytes.ts';
import { decodeL1, decodeL2, encodeL1, encodeL2, l1HasReservedBits, l2EntryBytes, type L2Entry, type L2Format } from '../format/entries.ts';
import {
  backingFormat,
  clusterSize,
  dataFileName,
  EXT_BITMAPS,
  extendedL2,
  findExtension,
  parseHeader,
  serializeFixedHeader,
  type Header,
} from '../format/header.ts';
import {
  AUTOCLEAR_BITMAPS,
  AUTOCLEAR_DATA_FILE_RAW,
  INCOMPAT_CORRUPT,
  INCOMPAT_DIRTY,
  MAX_BACKING_CHAIN,
  MAX_HOST_OFFSET,
  MAX_L1_BYTES,
} from '../format/limits.ts';
import { MAX_SNAPSHOT_ENTRY_BYTES, parseSnapshotTable, parseSnapshotTableForCheck, snapshotIsoDate, snapshotTableLength, type DroppedSnapshotEntry, type SnapshotEntry } from '../format/snapshot-table.ts';
import type { GuestReader } from './guest-reader.ts';
import { RawImage } from './raw-image.ts';
import { Refcounts } from './refcounts.ts';
import { refuseUnsoundMetadata } from './change-validation.ts';
import { TableCache } from './table-cache.ts';
import { openImageCipher, type DiskCipher } from '../crypto/disk-cipher.ts';
import { DISK_START_BYTES, judgeDiskStart, judgeSamples, SAMPLE_BYTES, SAMPLE_CLUSTERS, type DiskStartVerdict } from './disk-start.ts';
import type { Passphrase } from '../crypto/luks-keys.ts';
import type { JobContext } from '../job-context.ts';
import { MAX_SNAPSHOT_TABLE_BYTES, SECTOR } from '../format/limits.ts';
import { dataFileIsRaw, dataFilePathOf, hasExternalData, openDataFile } from './data-file.ts';

export interface OpenImageOptions {
  readOnly?: boolean;
  /** Open the backing chain for reads (default true). */
  openBacking?: boolean;
  /** Open the external data file, where the image has one (default true); without it only metadata can be read (info). */
  openDataFile?: boolean;
  /** Used by tests to supply fault-injecting files; defaults to node:fs. */
  openFile?: (filePath: string, readOnly: boolean) => BlockFile;
  /** Internal: the chain depth and files already open, for loop detection. */
  chain?: string[];
  /**
   * For `check --repair` only: a dirty or corrupt image is opened with a writable file so that
   * check can repair its metadata (`repairAccess`); guest writes stay refused until it is clean.
   */
  allowDirtyForRepair?: boolean;
  /**
   * For check, and the rescue copy that only reads: open what a check can report and a repair can
   * fix instead of refusing it (no refcount table, a snapshot table past the end of the file or
   * lacking v3 extra data, whose unreadable entries are left out; see `snapshotTableDamage`).
   * Guest writes stay refused while any of it is there.
   */
  forCheck?: boolean;
  /**
   * Fail with IN_USE when the image, or a file in its backing chain, is being written by another
   * program, instead of opening it read-only as the app does (the CLI's read commands without -U;
   * 'changing' for the files a commit or rebase reads, where forcing the read is no answer).
   */
  refuseInUse?: RefuseInUse;
  /** Upper bounds of the metadata caches (defaults: 32 MiB of L2 tables, 4 MiB of refcount blocks); tests make them tiny to force evictions. */
  cacheBytes?: { l2Tables?: number; refcountBlocks?: number };
  /**
   * An encrypted image's passphrase (and its backing files', where they are encrypted too): without
   * it metadata reads work and data reads fail with LOCKED. A wrong one is BAD_PASSPHRASE at open.
   */
  passphrase?: Passphrase;
  /** The data cipher, already unlocked (a rewrite's new image; saves a second PBKDF2). Wins over passphrase. */
  cipher?: DiskCipher;
  /**
   * Legacy AES (crypt_method 1) has no key check, so by default a passphrase under which the
   * disk's start decrypts to noise is refused with BAD_PASSPHRASE (disk-start.ts); true opens it
   * anyway, as QEMU would (the CLI's --force).
   */
  trustLegacyPassphrase?: boolean;
  /** Progress and cancel for unlocking (PBKDF2 takes seconds). */
  job?: JobContext;
}

/** An L1 table in memory: the active one (mutable) or a snapshot's (read-only). */
export interface L1Table {
  offset: number;
  size: number;
  bytes: Uint8Array;
  view: DataView;
}

/** The read-only reason of an image opened without its external data file (`openDataFile: false`). */
export const WITHOUT_DATA_FILE_REASON = 'it was opened without its external data file';

export function defaultOpenFile(filePath: string, readOnly: boolean): BlockFile {
  return NodeBlockFile.open(filePath, { readOnly });
}

export class Qcow2Image implements GuestReader {
  /** The qcow2 file: header and every table (and the guest data, unless an external data file holds it). */
  readonly file: BlockFile;
  /**
   * The external data file (incompatible bit 2; data-file.ts finds it as QEMU does) holding the
   * guest clusters at host offset = guest offset, unrefcounted; null when the image keeps its own
   * data, or was opened without it. Set once, while opening.
   */
  dataFile: FailStopFile | null = null;
  /** Guest clusters live in an external data file (the header's incompatible bit 2). */
  readonly externalData: boolean;
  readonly header: Header;
  readonly clusterBits: number;
  readonly clusterBytes: number;
  readonly l2Format: L2Format;
  readonly l2EntryBytes: number;
  readonly l2Entries: number;
  readonly subclusterBytes: number;
  l1: L1Table;
  snapshots: SnapshotEntry[];
  /** Bytes the on-disk snapshot table occupies (what to free when it is replaced). */
  snapshotTableBytes = 0;
  /** Opened forCheck: snapshot table entries the image cannot keep as they are (null when there are none). */
  snapshotTableDamage: { incomplete: number[]; dropped: DroppedSnapshotEntry[] } | null = null;
  readonly refcounts: Refcounts;
  readonly l2Cache: TableCache;
  backing: GuestReader | null;
  readonly backingPath: string | null;
  readOnly: boolean;
  readOnlyReason: string | null;
  /** Opened with allowDirtyForRepair on a writable file: check may repair metadata even while guest writes are refused. */
  repairAccess = false;
  /** The file, stopped for writing after its first failed write (fail-stop-file.ts). */
  private readonly writeGuard: FailStopFile;
  private readonly dirtyL1 = new Set<number>();
  private decompressed: { hostOffset: number; bytes: Uint8Array } | null = null;
  private decompressBuffer: Uint8Array | null = null;
  private preparedForWrite = false;
  private validatedForChange = false;
  /** Clusters known to hold metadata (header, tables, active L2s): guest data must never land there. */
  readonly metadataClusters = new Set<number>();
  /** An encrypted image's data cipher once unlocked; null for a plain image or one still locked. */
  cipher: DiskCipher | null = null;

  private constructor(file: FailStopFile, header: Header, l1: L1Table, refcounts: Refcounts, snapshots: SnapshotEntry[], backing: GuestReader | null, backingPath: string | null, l2CacheBytes: number) {
    this.file = file;
    this.writeGuard = file;
    this.header = header;
    this.clusterBits = header.clusterBits;
    this.clusterBytes = clusterSize(header);
    this.externalData = hasExternalData(header);
    this.l2Format = { clusterBits: header.clusterBits, extendedL2: extendedL2(header), externalData: this.externalData };
    this.l2EntryBytes = l2EntryBytes(this.l2Format);
    this.l2Entries = this.clusterBytes / this.l2EntryBytes;
    this.subclusterBytes = this.l2Format.extendedL2 ? this.clusterBytes / 32 : this.clusterBytes;
    this.l1 = l1;
    this.refcounts = refcounts;
    this.snapshots = snapshots;
    this.backing = backing;
    this.backingPath = backingPath;
    this.readOnly = file.readOnly;
    this.readOnlyReason = file.readOnly ? 'opened read-only' : null;
    this.l2Cache = new TableCache(file, this.clusterBytes, l2CacheBytes, 'L2 table');
    // A dirty L2 table may only reach the disk after the refcounts of what it points to, and
    // after the refcount table links any block those live in (an eviction is a write too).
    this.l2Cache.beforeWriteBack = () => this.flushRefcounts();
    this.refcounts.onMetadataCluster = (clusterIndex, isMetadata) => {
      if (isMetadata) this.metadataClusters.add(clusterIndex);
      else this.metadataClusters.delete(clusterIndex);
    };
  }

  static open(filePath: string, options: OpenImageOptions = {}): Qcow2Image {
    const openFile = options.openFile ?? defaultOpenFile;
    const file = openFile(filePath, options.readOnly ?? false);
    try {
      return Qcow2Image.openFile(file, options);
    } catch (error) {
      file.close();
      throw namingFile(error, filePath);
    }
  }

  static openFile(openedFile: BlockFile, options: OpenImageOptions = {}): Qcow2Image {
    refuseIfWrittenElsewhere(openedFile, options.refuseInUse);
    const file = FailStopFile.wrap(openedFile);
    const fileSize = file.size();
    const forCheck = options.forCheck === true;
    const header = parseHeader(readHeaderCluster(file, fileSize), fileSize, { forCheck });
    const clusterBytes = clusterSize(header);
    const l1Bytes = new Uint8Array(header.l1Size * 8);
    if (l1Bytes.length > 0 && file.read(l1Bytes, header.l1TableOffset) < l1Bytes.length) {
      throw new Qcow2Error('TRUNCATED', 'The L1 table is cut short: the image is truncated');
    }
    const l1: L1Table = { offset: header.l1TableOffset, size: header.l1Size, bytes: l1Bytes, view: view(l1Bytes) };
    const refcounts = Refcounts.load(file, {
      clusterBits: header.clusterBits,
      refcountOrder: header.refcountOrder,
      tableOffset: header.refcountTableOffset,
      tableClusters: header.refcountTableClusters,
    }, options.cacheBytes?.refcountBlocks);
    const snapshotTable = forCheck ? loadSnapshotTableForCheck(file, header, fileSize) : { ...loadSnapshotTable(file, header, fileSize), damage: null };
    let backing: GuestReader | null = null;
    let backingPath: string | null = null;
    if (header.backingFile !== null) {
      backingPath = resolveBackingPath(file.path, header.backingFile);
      if (options.openBacking !== false) {
        const protocol = backingProtocolProblem(header.backingFile);
        if (protocol !== null) throw new Qcow2Error('UNSUPPORTED_FEATURE', protocol);
        backing = openBacking(file.path, backingPath, backingFormat(header), options);
      }
    }
    const image = new Qcow2Image(file, header, l1, refcounts, snapshotTable.entries, backing, backingPath, options.cacheBytes?.l2Tables ?? 32 * 1024 * 1024);
    image.snapshotTableBytes = snapshotTable.length;
    image.snapshotTableDamage = snapshotTable.damage;
    image.collectMetadataClusters(clusterBytes);
    try {
      image.attachDataFile(options);
      if (header.cryptMethod !== 0) image.cipher = options.cipher ?? (options.passphrase !== undefined ? openImageCipher(file, header, options.passphrase, options.job).cipher : null);
      if (header.cryptMethod === 1 && options.cipher === undefined && image.cipher !== null && options.trustLegacyPassphrase !== true) image.judgeLegacyPassphrase();
    } catch (error) {
      // The file is the caller's to close; what this image opened is its own.
      image.cipher?.close();
      image.cipher = null;
      image.dataFile?.close();
      backing?.close();
      throw error;
    }
    if ((header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n) image.setReadOnly('the image is marked corrupt; run a check with repair first');
    else if ((header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n) image.setReadOnly('its refcounts may be stale (it was not closed cleanly); run a check with repair first');
    // Writing would have to clear the bitmaps bit (the spec's rule for autoclear features), which
    // silently invalidates the dirty bitmaps incremental backups rely on: refuse instead.
    else if ((header.autoclearFeatures & AUTOCLEAR_BITMAPS) !== 0n && findExtension(header, EXT_BITMAPS) !== undefined) {
      image.setReadOnly(BITMAPS_READ_ONLY_REASON);
    }
    // Without its data file guest writes would land in the qcow2 file: metadata only (check's repairs).
    else if (image.externalData && image.dataFile === null) image.setReadOnly(WITHOUT_DATA_FILE_REASON);
    if (header.refcountTableClusters === 0) image.setReadOnly('it has no refcount table; run a check with repair first');
    else if (snapshotTable.damage !== null) image.setReadOnly('its snapshot table is damaged; run a check with repair first');
    // A VM holding the image explains a dirty bit (lazy refcounts) too: say what matters first.
    if (file.inUseElsewhere === true || image.dataFile?.inUseElsewhere === true) image.setReadOnly(IN_USE_REASON);
    image.repairAccess = options.allowDirtyForRepair === true && !file.readOnly;
    return image;
  }

  /** Opens the external data file where the header names one: with the image's access and locks. */
  private attachDataFile(options: OpenImageOptions): void {
    if (!this.externalData) return;
    if (options.openDataFile === false) return;
    const dataPath = dataFilePathOf(this.header);
    if (dataPath === null) return;
    const opened = openDataFile(this.header, dataPath, this.file.readOnly, options.openFile ?? defaultOpenFile);
    this.dataFile = FailStopFile.wrap(opened);
    refuseIfWrittenElsewhere(opened, options.refuseInUse);
  }

  /** The file guest data clusters are in: the external data file, or the image itself. */
  private get dataHost(): BlockFile {
    return this.dataFile ?? this.file;
  }

  /**
   * BAD_PASSPHRASE when the disk's start, or where it holds none of the image's own encrypted data
   * samples of that data elsewhere, decrypt to noise under a legacy AES passphrase (see disk-start.ts).
   * An image with no encrypted data at all has nothing a wrong passphrase could garble.
   */
  private judgeLegacyPassphrase(): void {
    const start = new Uint8Array(Math.min(DISK_START_BYTES, this.virtualSize));
    // By subcluster: an extended L2 cluster's unallocated and zero subclusters read zeros, which
    // look like structure under any passphrase; only those holding the image's data say anything.
    const subclusters = this.l2Format.extendedL2 ? 32 : 1;
    const subclusterBytes = this.clusterBytes / subclusters;
    const ownEncrypted = new Set<number>();
    let verdict: DiskStartVerdict = { kind: 'unknown' };
    let sampled = false;
    try {
      for (let clusterStart = 0; clusterStart < start.length; clusterStart += this.clusterBytes) {
        const entry = this.lookup(this.l1, clusterStart);
        if (entry === null || entry.kind !== 'normal') continue;
        for (let subcluster = 0; subcluster < subclusters; subcluster++) {
          if (subclusters === 1 || ((entry.allocMask >>> subcluster) & 1) !== 0) ownEncrypted.add(clusterStart / subclusterBytes + subcluster);
        }
      }
      if (ownEncrypted.size > 0) {
        this.readThrough(this.l1, start, 0, this.virtualSize);
        verdict = judgeDiskStart(start, (guestOffset) => ownEncrypted.has(Math.floor(guestOffset / subclusterBytes)));
      }
      if (verdict.kind === 'unknown') {
        sampled = true;
        verdict = judgeSamples(this.sampleOwnData());
      }
    } catch (error) {
      // A table too broken to read is for check to report, not a verdict on the passphrase.
      if (error instanceof Qcow2Error && error.code !== 'IO_ERROR') return;
      throw error;
    }
    if (verdict.kind === 'noise') {
      const where = sampled ? 'the data it holds decrypts to noise (the start of the disk holds none of it; every sector sampled from it looks like random bytes)' : 'the start of the disk decrypts to noise (no partition table, no file system)';
      throw new Qcow2Error('BAD_PASSPHRASE', `The passphrase is probably wrong: this disk uses the old qcow2 AES encryption, which has no key check, and with this passphrase ${where}`);
    }
  }

  /** Decrypted samples of the image's own data clusters, in guest order, the current state's first (disk-start.ts). */
  private sampleOwnData(): Uint8Array[] {
    const samples: Uint8Array[] = [];
    const subclusterBytes = this.l2Format.extendedL2 ? this.clusterBytes / 32 : this.clusterBytes;
    const sampleBytes = Math.min(SAMPLE_BYTES, subclusterBytes);
    const seen = new Set<number>();
    // A snapshot's L1 table is read only once the states before it gave too few samples.
    for (let state = 0; state <= this.snapshots.length; state++) {
      const snapshot = state === 0 ? undefined : this.snapshots[state - 1];
      const l1 = snapshot === undefined ? this.l1 : this.loadSnapshotL1(snapshot);
      for (let l1Index = 0; l1Index < l1.size; l1Index++) {
        const l2Offset = this.l2OffsetAt(l1, l1Index);
        if (l2Offset === 0) continue;
        const table = this.l2Cache.get(l2Offset);
        for (let slot = 0; slot < this.l2Entries; slot++) {
          const entry = decodeL2(table.view, slot * this.l2EntryBytes, this.l2Format);
          if (entry.kind !== 'normal' || seen.has(entry.hostOffset) || (this.l2Format.extendedL2 && entry.allocMask === 0)) continue;
          // The first subcluster that holds data (the lowest bit set); a cluster without subclusters from its start.
          const first = this.l2Format.extendedL2 ? 31 - Math.clz32(entry.allocMask & -entry.allocMask) : 0;
          seen.add(entry.hostOffset);
          const sample = new Uint8Array(sampleBytes);
          this.readData(entry.hostOffset + first * subclusterBytes, (l1Index * this.l2Entries + slot) * this.clusterBytes + first * subclusterBytes, sample);
          samples.push(sample);
          if (samples.length >= SAMPLE_CLUSTERS) return samples;
        }
      }
    }
    return samples;
  }

  private setReadOnly(reason: string): void {
    this.readOnly = true;
    this.readOnlyReason = reason;
  }

  get virtualSize(): number {
    return this.header.virtualSize;
  }

  get version(): 2 | 3 {
    return this.header.version;
  }

  /** Recomputes the metadata cluster set after tables moved (snapshot apply/delete). */
  rebuildMetadataClusters(): void {
    this.metadataClusters.clear();
    this.collectMetadataClusters(this.clusterBytes);
  }

  private collectMetadataClusters(clusterBytes: number): void {
    const add = (offset: number, bytes: number): void => {
      for (let cluster = Math.floor(offset / clusterBytes); cluster < Math.ceil((offset + bytes) / clusterBytes); cluster++) this.metadataClusters.add(cluster);
    };
    add(0, clusterBytes);
    add(this.l1.offset, this.l1.size * 8);
    add(this.refcounts.tableOffset, this.refcounts.tableClusters * clusterBytes);
    if (this.header.snapshotCount > 0) add(this.header.snapshotsOffset, this.snapshotTableBytes);
    // A snapshot whose L1 table is invalid still opens (as in QEMU); using it fails in loadSnapshotL1.
    const fileSize = this.file.size();
    const snapshotTables = new Set<string>();
    for (const snapshot of this.snapshots) {
      const key = `${snapshot.l1TableOffset}:${snapshot.l1Size}`;
      if (snapshotTables.has(key) || snapshotL1Problem(snapshot, clusterBytes, fileSize) !== null) continue;
      snapshotTables.add(key);
      add(snapshot.l1TableOffset, snapshot.l1Size * 8);
    }
    for (let index = 0, used = this.refcounts.usedTableEntries(); index < used; index++) {
      // An invalid entry must not stop the image opening (check reports and repairs it); using it fails.
      const blockOffset = this.refcounts.blockOffsetIfValid(index);
      if (blockOffset !== null && blockOffset !== 0) add(blockOffset, clusterBytes);
    }
    for (let index = 0; index < this.l1.size; index++) {
      const entry = decodeL1(this.l1.view, index * 8);
      if (entry.l2Offset !== 0) add(entry.l2Offset, clusterBytes);
    }
  }

  // ---------------------------------------------------------------- reading

  readInto(buffer: Uint8Array, guestOffset: number): void {
    this.readThrough(this.l1, buffer, guestOffset, this.virtualSize);
  }

  read(guestOffset: number, length: number): Uint8Array {
    const buffer = new Uint8Array(length);
    this.readInto(buffer, guestOffset);
    return buffer;
  }

  /** Guest bytes as seen through `l1` (the active table or a snapshot's); past `limit` reads zeros. */
  readThrough(l1: L1Table, buffer: Uint8Array, guestOffset: number, limit: number): void {
    this.assertReadable();
    if (guestOffset < 0 || !Number.isSafeInteger(guestOffset)) throw new Qcow2Error('INVALID_ARGUMENT', `Invalid guest offset ${guestOffset}`);
    // Clusters that lie back to back in the file are read with one call.
    let runHost = 0;
    let runStart = 0;
    let runLength = 0;
    const readRun = (): void => {
      if (runLength > 0) this.readData(runHost, guestOffset + runStart, buffer.subarray(runStart, runStart + runLength));
      runLength = 0;
    };
    let done = 0;
    while (done < buffer.length) {
      const position = guestOffset + done;
      const inCluster = position % this.clusterBytes;
      // A piece never runs past `limit`: the end of a disk whose size is not whole clusters falls
      // inside its last cluster, and past it the disk reads zeros — not its backing file's bytes.
      const length = Math.min(this.clusterBytes - inCluster, buffer.length - done, position < limit ? limit - position : Number.MAX_SAFE_INTEGER);
      const target = buffer.subarray(done, done + length);
      if (position >= limit) target.fill(0);
      else {
        const clusterStart = position - inCluster;
        const entry = this.lookup(l1, clusterStart);
        if (entry !== null && entry.kind === 'normal' && !this.l2Format.extendedL2) {
          const host = entry.hostOffset + inCluster;
          if (runLength > 0 && runHost + runLength === host && runStart + runLength === done) runLength += length;
          else {
            readRun();
            runHost = host;
            runStart = done;
            runLength = length;
          }
        } else this.readEntry(entry, clusterStart, inCluster, target);
      }
      done += length;
    }
    readRun();
  }

  private assertReadable(): void {
    if (this.header.cryptMethod !== 0 && this.cipher === null) throw lockedError();
    if (this.externalData && this.dataFile === null) throw new Qcow2Error('INTERNAL', 'the image was opened without its external data file');
  }

  /** The L2 entry for a guest cluster through `l1`, or null where no L2 table covers it. */
  lookup(l1: L1Table, guestClusterStart: number): L2Entry | null {
    const clusterIndex = Math.floor(guestClusterStart / this.clusterBytes);
    const l1Index = Math.floor(clusterIndex / this.l2Entries);
    if (l1Index >= l1.size) return null;
    const l2Offset = this.l2OffsetAt(l1, l1Index);
    if (l2Offset === 0) return null;
    const table = this.l2Cache.get(l2Offset);
    const entry = decodeL2(table.view, (clusterIndex % this.l2Entries) * this.l2EntryBytes, this.l2Format);
    if (entry.kind === 'normal' && !isAligned(entry.hostOffset, this.clusterBytes)) {
      throw new Qcow2Error('CORRUPT', `Cluster at guest offset ${hex(guestClusterStart)} has an unaligned host offset ${hex(entry.hostOffset)}`);
    }
    // 56-bit offsets can exceed what a file (or a JS number) can hold.
    if (entry.hostOffset > MAX_HOST_OFFSET - this.clusterBytes - entry.compressedSize) {
      throw new Qcow2Error('CORRUPT', `Cluster at guest offset ${hex(guestClusterStart)} points to ${hex(entry.hostOffset)}, beyond the end of any file`);
    }
    return entry;
  }

  l2OffsetAt(l1: L1Table, l1Index: number): number {
    if (l1HasReservedBits(l1.view, l1Index * 8)) throw new Qcow2Error('CORRUPT', `L1 entry ${l1Index} has reserved bits set`);
    const { l2Offset } = decodeL1(l1.view, l1Index * 8);
    if (l2Offset !== 0 && !isAligned(l2Offset, this.clusterBytes)) throw new Qcow2Error('CORRUPT', `L1 entry ${l1Index} points to an unaligned L2 table at ${hex(l2Offset)}`);
    if (l2Offset !== 0 && l2Offset < this.clusterBytes) throw new Qcow2Error('CORRUPT', `L1 entry ${l1Index} points into the header`);
    if (l2Offset > MAX_HOST_OFFSET - this.clusterBytes) throw new Qcow2Error('CORRUPT', `L1 entry ${l1Index} points to ${hex(l2Offset)}, beyond the end of any file`);
    return l2Offset;
  }

  private readEntry(entry: L2Entry | null, clusterStart: number, inCluster: number, target: Uint8Array): void {
    if (entry === null || entry.kind === 'unallocated') {
      if (this.l2Format.extendedL2 && entry !== null) return this.readSubclusters(entry, clusterStart, inCluster, target);
      return this.readBelow(clusterStart + inCluster, target);
    }
    if (entry.kind === 'zero') {
      target.fill(0);
      return;
    }
    if (entry.kind === 'compressed') {
      if (this.externalData) throw new Qcow2Error('CORRUPT', `Cluster at guest offset ${hex(clusterStart)} is compressed, which an image with an external data file cannot have`);
      const cluster = this.decompress(entry);
      target.set(cluster.subarray(inCluster, inCluster + target.length));
      return;
    }
    if (this.l2Format.extendedL2) return this.readSubclusters(entry, clusterStart, inCluster, target);
    this.readData(entry.hostOffset + inCluster, clusterStart + inCluster, target);
  }

  private readSubclusters(entry: L2Entry, clusterStart: number, inCluster: number, target: Uint8Array): void {
    let done = 0;
    while (done < target.length) {
      const within = inCluster + done;
      const subcluster = Math.floor(within / this.subclusterBytes);
      const length = Math.min((subcluster + 1) * this.subclusterBytes - within, target.length - done);
      const part = target.subarray(done, done + length);
      const allocated = ((entry.allocMask >>> subcluster) & 1) === 1;
      const zero = ((entry.zeroMask >>> subcluster) & 1) === 1;
      if (allocated && zero) throw new Qcow2Error('CORRUPT', `Subcluster ${subcluster} at guest offset ${hex(clusterStart)} is both allocated and zero`);
      if (allocated) {
        if (entry.kind !== 'normal') throw new Qcow2Error('CORRUPT', `Subcluster ${subcluster} at guest offset ${hex(clusterStart)} is allocated in an unallocated cluster`);
        this.readData(entry.hostOffset + within, clusterStart + within, part);
      } else if (zero) part.fill(0);
      else this.readBelow(clusterStart + within, part);
      done += length;
    }
  }

  private readHost(hostOffset: number, target: Uint8Array): void {
    const count = this.dataHost.read(target, hostOffset);
    if (count < target.length) target.fill(0, count);
  }

  /**
   * Guest bytes stored at `hostOffset` (a data cluster, not a compressed one): as they are, or
   * decrypted. Encryption works on whole 512-byte sectors, so a part-sector read decrypts the
   * sectors around it (host and guest offsets share their place within a sector).
   */
  readData(hostOffset: number, guestOffset: number, target: Uint8Array): void {
    const cipher = this.cipher;
    if (cipher === null) {
      if (this.header.cryptMethod !== 0) throw lockedError();
      this.readHost(hostOffset, target);
      return;
    }
    const head = hostOffset % SECTOR;
    if (head === 0 && target.length % SECTOR === 0) {
      this.readHost(hostOffset, target);
      cipher.decrypt(target, hostOffset, guestOffset);
      return;
    }
    const sectors = new Uint8Array(Math.ceil((head + target.length) / SECTOR) * SECTOR);
    this.readHost(hostOffset - head, sectors);
    cipher.decrypt(sectors, hostOffset - head, guestOffset - head);
    target.set(sectors.subarray(head, head + target.length));
  }

  /**
   * Writes guest bytes to a data cluster at `hostOffset` — encrypted for its place when the image
   * is. Every guest-data write goes through here, so plaintext never reaches an encrypted image.
   * `data` must cover whole sectors when the image is encrypted.
   */
  writeData(hostOffset: number, guestOffset: number, data: Uint8Array): void {
    const cipher = this.cipher;
    if (cipher === null) {
      if (this.header.cryptMethod !== 0) throw lockedError();
      this.dataHost.write(data, hostOffset);
      return;
    }
    if (hostOffset % SECTOR !== 0 || data.length % SECTOR !== 0) throw new Qcow2Error('INTERNAL', 'encrypted data must be written in whole sectors');
    // A copy, whatever the caller passed: Buffer#slice would be a view, and the caller's bytes would be encrypted in place.
    const sealed = new Uint8Array(data);
    cipher.encrypt(sealed, hostOffset, guestOffset);
    this.dataHost.write(sealed, hostOffset);
  }

  /** Unallocated: the backing file's bytes, or zeros. */
  private readBelow(guestOffset: number, target: Uint8Array): void {
    if (this.backing === null || guestOffset >= this.backing.virtualSize) {
      target.fill(0);
      return;
    }
    this.backing.readInto(target, guestOffset);
  }

  decompress(entry: L2Entry): Uint8Array {
    if (this.decompressed !== null && this.decompressed.hostOffset === entry.hostOffset) return this.decompressed.bytes;
    const maxCompressed = this.clusterBytes + 2 * 512;
    const input = new Uint8Array(Math.min(entry.compressedSize, maxCompressed));
    const count = this.file.read(input, entry.hostOffset);
    // One buffer, reused: every caller copies the bytes out before the next decompression.
    this.decompressed = null;
    this.decompressBuffer ??= new Uint8Array(this.clusterBytes);
    const bytes = decompressCluster(this.header.compressionType, input.subarray(0, count), this.clusterBytes, this.decompressBuffer);
    this.decompressed = { hostOffset: entry.hostOffset, bytes };
    return bytes;
  }

  /** The snapshot's L1 table, read and bounds-checked. */
  loadSnapshotL1(snapshot: SnapshotEntry): L1Table {
    const problem = snapshotL1Problem(snapshot, this.clusterBytes, this.file.size());
    if (problem !== null) throw new Qcow2Error('CORRUPT', problem);
    const bytes = new Uint8Array(snapshot.l1Size * 8);
    if (bytes.length > 0 && this.file.read(bytes, snapshot.l1TableOffset) < bytes.length) {
      throw new Qcow2Error('CORRUPT', `Snapshot ${snapshot.name}'s L1 table lies past the end of the file`);
    }
    return { offset: snapshot.l1TableOffset, size: snapshot.l1Size, bytes, view: view(bytes) };
  }

  /** A reader of the guest disk as it was when `snapshot` was taken. */
  snapshotReader(snapshot: SnapshotEntry): Qcow2StateView {
    return new Qcow2StateView(this, this.loadSnapshotL1(snapshot), snapshot.diskSize ?? this.virtualSize);
  }

  // ---------------------------------------------------------------- writing

  assertWritable(): void {
    if (this.readOnly && this.readOnlyReason === IN_USE_REASON) throw inUseError();
    this.writeGuard.throwIfFailed();
    this.dataFile?.throwIfFailed();
    if (this.readOnly) throw new Qcow2Error('READ_ONLY', `${this.file.path} cannot be changed: ${this.readOnlyReason ?? 'opened read-only'}`);
  }

  /** Before the first change: clear autoclear bits for extensions Cowbell does not maintain (as QEMU's spec asks). */
  prepareForWrite(): void {
    this.assertWritable();
    if (this.preparedForWrite) return;
    this.validateForChange();
    this.preparedForWrite = true;
    // Cowbell maintains no autoclear feature but the raw data file's (it zeroes the data file where
    // it zeroes the guest, see zeroCluster), so every other bit goes, durably before the first
    // change (qcow2.txt, autoclear_features).
    const kept = this.externalData ? this.header.autoclearFeatures & AUTOCLEAR_DATA_FILE_RAW : 0n;
    if (this.header.version === 3 && this.header.autoclearFeatures !== kept) {
      this.header.autoclearFeatures = kept;
      this.writeHeader();
      this.file.flush();
    }
  }

  /**
   * Before the first change of this open: refuses with CORRUPT, before anything is written, unless
   * every reference a change may follow is sound (change-validation.ts). Once per open: the
   * changes made since keep it sound.
   */
  validateForChange(): void {
    if (this.validatedForChange) return;
    try {
      refuseUnsoundMetadata(this);
    } catch (error) {
      // As after a refused write over metadata: the rest of this open is read-only.
      if (error instanceof Qcow2Error && error.code === 'CORRUPT') this.setReadOnly('its metadata is damaged; run a check with repair first');
      throw error;
    }
    this.validatedForChange = true;
  }

  /** Writes the fixed header fields in one write (they all fit in the first sector). */
  writeHeader(): void {
    this.file.write(serializeFixedHeader(this.header), 0);
  }

  write(buffer: Uint8Array, guestOffset: number): void {
    this.prepareForWrite();
    this.checkRange(guestOffset, buffer.length);
    let done = 0;
    while (done < buffer.length) {
      const position = guestOffset + done;
      const inCluster = position % this.clusterBytes;
      const length = Math.min(this.clusterBytes - inCluster, buffer.length - done);
      this.writeCluster(position - inCluster, inCluster, buffer.subarray(done, done + length));
      done += length;
    }
  }

  private checkRange(guestOffset: number, length: number): void {
    if (guestOffset < 0 || length < 0 || !Number.isSafeInteger(guestOffset + length) || guestOffset + length > this.virtualSize) {
      throw new Qcow2Error('INVALID_ARGUMENT', `Range ${guestOffset}+${length} is outside the ${this.virtualSize}-byte disk`);
    }
  }

  /** Writes `data` at `inCluster` of the guest cluster starting at `clusterStart`, copying on write where needed. */
  private writeCluster(clusterStart: number, inCluster: number, data: Uint8Array): void {
    const slot = this.writableL2Slot(clusterStart);
    const entry = decodeL2(slot.table.view, slot.position, this.l2Format);
    const whole = inCluster === 0 && data.length === this.clusterBytes;
    if (entry.kind === 'normal' && this.dataRefcount(entry.hostOffset) === 1) {
      this.assertDataCluster(entry.hostOffset);
      const allocatedAll = !this.l2Format.extendedL2 || entry.allocMask === 0xffffffff;
      const sectorAligned = inCluster % SECTOR === 0 && data.length % SECTOR === 0;
      if ((allocatedAll || whole) && (this.cipher === null || sectorAligned)) {
        this.writeData(entry.hostOffset + inCluster, clusterStart + inCluster, data);
      } else if (allocatedAll) {
        // An encrypted cluster changes in whole sectors: the sectors around the write, merged.
        const first = Math.floor(inCluster / SECTOR) * SECTOR;
        const end = Math.ceil((inCluster + data.length) / SECTOR) * SECTOR;
        const merged = this.clusterContent(clusterStart).subarray(first, end);
        merged.set(data, inCluster - first);
        this.writeData(entry.hostOffset + first, clusterStart + first, merged);
      } else {
        const merged = this.clusterContent(clusterStart);
        merged.set(data, inCluster);
        this.writeData(entry.hostOffset, clusterStart, merged);
      }
      if (!entry.copied || !allocatedAll) {
        encodeL2(slot.table.view, slot.position, this.l2Format, { hostOffset: entry.hostOffset, copied: true, zero: false, allocMask: 0xffffffff, zeroMask: 0 });
        slot.table.dirty = true;
      }
      return;
    }
    let content = data;
    if (!whole) {
      content = this.clusterContent(clusterStart);
      content.set(data, inCluster);
    }
    // An external data file holds each guest cluster at its own offset, with no refcount to take.
    const hostOffset = this.externalData ? clusterStart : this.refcounts.allocate(1);
    this.assertDataCluster(hostOffset);
    this.writeData(hostOffset, clusterStart, content);
    encodeL2(slot.table.view, slot.position, this.l2Format, { hostOffset, copied: true, zero: false, allocMask: 0xffffffff, zeroMask: 0 });
    slot.table.dirty = true;
    this.releaseEntry(entry);
  }

  /** The guest's current view of a whole cluster (for read-modify-write). */
  private clusterContent(clusterStart: number): Uint8Array {
    const content = new Uint8Array(this.clusterBytes);
    this.readThrough(this.l1, content, clusterStart, Number.MAX_SAFE_INTEGER);
    if (clusterStart + this.clusterBytes > this.virtualSize) content.fill(0, Math.max(0, this.virtualSize - clusterStart));
    return content;
  }

  /** The refcount of a data cluster: in an external data file every allocated cluster counts as 1 (qcow2.txt, L2 entry bit 63). */
  dataRefcount(hostOffset: number): number {
    return this.externalData ? 1 : this.refcounts.get(hostOffset / this.clusterBytes);
  }

  /** Schedules the refcount drop for whatever host clusters an L2 entry held (none in an external data file). */
  releaseEntry(entry: L2Entry): void {
    if (this.externalData) return;
    if (entry.kind === 'compressed') {
      const first = Math.floor(entry.hostOffset / this.clusterBytes);
      const last = Math.floor((entry.hostOffset + entry.compressedSize - 1) / this.clusterBytes);
      for (let cluster = first; cluster <= last; cluster++) this.refcounts.decrementLater(cluster);
    } else if (entry.hostOffset !== 0 && (entry.kind === 'normal' || entry.kind === 'zero')) {
      this.refcounts.decrementLater(entry.hostOffset / this.clusterBytes);
    }
  }

  private assertDataCluster(hostOffset: number): void {
    if (this.externalData) return;
    if (this.metadataClusters.has(hostOffset / this.clusterBytes)) {
      this.readOnly = true;
      this.readOnlyReason = 'a data cluster overlaps metadata';
      throw new Qcow2Error('CORRUPT', `Refusing to write guest data over metadata at ${hex(hostOffset)}; the image is corrupt (run a check)`);
    }
  }

  /**
   * The L2 table slot for a guest cluster, in a table this image may change: allocates a table
   * where none exists and copies a shared one (refcount > 1) first.
   */
  writableL2Slot(clusterStart: number): { table: ReturnType<TableCache['get']>; position: number } {
    const clusterIndex = Math.floor(clusterStart / this.clusterBytes);
    const l1Index = Math.floor(clusterIndex / this.l2Entries);
    const position = (clusterIndex % this.l2Entries) * this.l2EntryBytes;
    if (l1Index >= this.l1.size) throw new Qcow2Error('INTERNAL', `guest cluster ${clusterIndex} is beyond the L1 table`);
    const l2Offset = this.l2OffsetAt(this.l1, l1Index);
    if (l2Offset === 0) {
      const newOffset = this.refcounts.allocate(1);
      this.metadataClusters.add(newOffset / this.clusterBytes);
      const table = this.l2Cache.create(newOffset);
      this.setL1Entry(l1Index, newOffset, true);
      return { table, position };
    }
    const refcount = this.refcounts.get(l2Offset / this.clusterBytes);
    if (refcount === 1) {
      const { copied } = decodeL1(this.l1.view, l1Index * 8);
      if (!copied) this.setL1Entry(l1Index, l2Offset, true);
      return { table: this.l2Cache.get(l2Offset), position };
    }
    if (refcount === 0) throw new Qcow2Error('CORRUPT', `L2 table at ${hex(l2Offset)} is in use but its refcount is 0`);
    // Shared with a snapshot: copy it, without COPIED flags (every cluster it names is shared too).
    const source = this.l2Cache.get(l2Offset);
    const newOffset = this.refcounts.allocate(1);
    this.metadataClusters.add(newOffset / this.clusterBytes);
    const copy = this.l2Cache.create(newOffset, source.bytes);
    for (let slot = 0; slot < this.l2Entries; slot++) {
      const at = slot * this.l2EntryBytes;
      copy.view.setUint32(at, copy.view.getUint32(at) & 0x7fffffff);
    }
    this.setL1Entry(l1Index, newOffset, true);
    this.refcounts.decrementLater(l2Offset / this.clusterBytes);
    return { table: copy, position };
  }

  /** Points a slot at a freshly allocated host cluster (refcount 1, so COPIED). */
  setL2Normal(slot: { table: ReturnType<TableCache['get']>; position: number }, hostOffset: number): void {
    encodeL2(slot.table.view, slot.position, this.l2Format, { hostOffset, copied: true, zero: false, allocMask: 0xffffffff, zeroMask: 0 });
    slot.table.dirty = true;
  }

  setL1Entry(l1Index: number, l2Offset: number, copied: boolean): void {
    encodeL1(this.l1.view, l1Index * 8, l2Offset, copied);
    this.dirtyL1.add(l1Index);
  }

  /** Makes a guest range read as zeros: whole clusters become zero clusters (v3) or are deallocated. */
  writeZeroes(guestOffset: number, length: number): void {
    this.prepareForWrite();
    this.checkRange(guestOffset, length);
    let done = 0;
    while (done < length) {
      const position = guestOffset + done;
      const inCluster = position % this.clusterBytes;
      const part = Math.min(this.clusterBytes - inCluster, length - done);
      const wholeOrTail = inCluster === 0 && (part === this.clusterBytes || position + part === this.virtualSize);
      if (wholeOrTail && (this.version === 3 || this.backing === null)) this.zeroCluster(position, this.version === 3 ? 'zero' : 'deallocate');
      else this.writeCluster(position - inCluster, inCluster, new Uint8Array(part));
      done += part;
    }
  }

  /**
   * Discards a guest range: whole clusters stop holding data. Where a backing file would show
   * through, v3 marks them zero (as QEMU does); v2 with a backing file keeps them.
   */
  discard(guestOffset: number, length: number): void {
    this.prepareForWrite();
    this.checkRange(guestOffset, length);
    const first = Math.ceil(guestOffset / this.clusterBytes) * this.clusterBytes;
    for (let position = first; position + this.clusterBytes <= guestOffset + length || (position < guestOffset + length && guestOffset + length === this.virtualSize); position += this.clusterBytes) {
      if (this.backing === null) this.zeroCluster(position, 'deallocate');
      else if (this.version === 3) this.zeroCluster(position, 'zero');
    }
  }

  /**
   * Makes the whole clusters of a guest range unallocated, so the backing file shows through (what
   * `qemu-img commit` leaves in the overlay it emptied: QEMU's full discard).
   */
  deallocate(guestOffset: number, length: number): void {
    this.prepareForWrite();
    this.checkRange(guestOffset, length);
    const end = guestOffset + length;
    const first = Math.ceil(guestOffset / this.clusterBytes) * this.clusterBytes;
    for (let position = first; position + this.clusterBytes <= end || (position < end && end === this.virtualSize); position += this.clusterBytes) {
      this.zeroCluster(position, 'deallocate');
    }
  }

  private zeroCluster(clusterStart: number, how: 'zero' | 'deallocate'): void {
    const existing = this.lookup(this.l1, clusterStart);
    if (existing === null && how === 'deallocate') return;
    if (existing !== null && existing.kind === 'unallocated' && how === 'deallocate' && existing.allocMask === 0 && existing.zeroMask === 0) return;
    if (existing !== null && existing.kind === 'zero' && existing.hostOffset === 0 && how === 'zero') return;
    const slot = this.writableL2Slot(clusterStart);
    const entry = decodeL2(slot.table.view, slot.position, this.l2Format);
    const zero = how === 'zero';
    // A raw data file must read as the guest disk on its own: its bytes become zeros too.
    if (dataFileIsRaw(this.header)) this.dataHost.write(new Uint8Array(Math.min(this.clusterBytes, this.virtualSize - clusterStart)), clusterStart);
    encodeL2(slot.table.view, slot.position, this.l2Format, {
      hostOffset: 0,
      copied: false,
      zero,
      allocMask: 0,
      zeroMask: zero ? 0xffffffff : 0,
    });
    slot.table.dirty = true;
    this.releaseEntry(entry);
  }

  hasUnflushedChanges(): boolean {
    return this.dirtyL1.size > 0 || this.l2Cache.hasDirty() || this.refcounts.cache.hasDirty() || this.refcounts.hasPending();
  }

  /**
   * Makes every change durable in an order a crash cannot turn into corruption:
   * 1. guest data and refcount increments (then new refcount blocks' table entries, a moved
   *    refcount table and the header switching to it); 2. L2 tables; 3. L1 entries;
   * 4. refcount decrements for what is no longer pointed to.
   */
  flush(): void {
    if (this.file.readOnly) return;
    this.flushRefcounts();
    if (this.l2Cache.hasDirty()) {
      this.l2Cache.writeDirty();
      this.file.flush();
    }
    if (this.dirtyL1.size > 0) {
      this.writeL1Entries();
      this.file.flush();
    }
    if (this.refcounts.hasPending()) {
      const freed = this.refcounts.applyPendingDecrements();
      for (const cluster of freed) this.l2Cache.drop(cluster * this.clusterBytes);
      this.file.flush();
    }
  }

  /**
   * Step 1 of a flush, and what must precede any L2 table reaching the disk: refcount increments
   * and new blocks durable, then the table entries linking them (a moved table durable before the
   * header switches to it).
   */
  private flushRefcounts(): void {
    // Guest data in an external data file is durable before any table that points at it.
    this.dataFile?.flush();
    const relocated = this.refcounts.writeIncrements();
    this.file.flush();
    if (relocated) {
      this.header.refcountTableOffset = this.refcounts.tableOffset;
      this.header.refcountTableClusters = this.refcounts.tableClusters;
      this.writeHeader();
      this.file.flush();
      this.refcounts.finishRelocation();
    }
  }

  private writeL1Entries(): void {
    const indices = [...this.dirtyL1].sort((a, b) => a - b);
    this.dirtyL1.clear();
    // Contiguous runs of changed entries go out as one write each.
    let runStart = 0;
    for (let index = 1; index <= indices.length; index++) {
      const previous = indices[index - 1] ?? 0;
      if (index < indices.length && indices[index] === previous + 1) continue;
      const first = indices[runStart] ?? 0;
      this.file.write(this.l1.bytes.subarray(first * 8, (previous + 1) * 8), this.l1.offset + first * 8);
      runStart = index;
    }
  }

  /** Replaces the in-memory active L1 (after the caller wrote it to disk and switched the header). */
  replaceActiveL1(l1: L1Table): void {
    this.dirtyL1.clear();
    this.l1 = l1;
  }

  close(): void {
    try {
      // After a failed write the tables in memory may point where the file does not: keep what is on disk.
      const failed = this.writeGuard.failure !== null || (this.dataFile !== null && this.dataFile.failure !== null);
      if (!this.readOnly && !failed && this.hasUnflushedChanges()) this.flush();
      else if (!this.readOnly && !failed) this.dataFile?.flush();
    } finally {
      this.closeFiles();
    }
  }

  /**
   * Closes the image after a failed operation without writing anything more: the tables in memory
   * may be half changed. Every file it opened is closed (the data file and backing files too, so
   * none keeps its lock).
   */
  closeWithoutWriting(): void {
    this.closeFiles();
  }

  private closeFiles(): void {
    try {
      this.cipher?.close();
      this.cipher = null;
      this.backing?.close();
      this.dataFile?.close();
    } finally {
      this.file.close();
    }
  }
}

/** What reading an encrypted image's data without its passphrase gives. */
export function lockedError(): Qcow2Error {
  return new Qcow2Error('LOCKED', 'The disk is encrypted: unlock it with its passphrase to read or change its data');
}

/**
 * A snapshot as the app names it — its id (unique in an image), with the name the user saw where
 * the app has it, both checked — or, on the command line, a name or an id, or one said to be a
 * name (`snapshot.name=`). qcow2 does not keep names unique (qemu-img snapshot -c takes a name
 * twice), so only the id can tell two snapshots named alike apart.
 */
/**
 * A snapshot by name or id (a string: either, refused where it means two), or by id and/or name.
 * `typed`: the text a user typed for an explicit form (`snapshot.id=1`): a snapshot literally named
 * so, other than the one it leads to, makes it mean two.
 */
export type SnapshotRef = string | { id: string; name?: string; date?: string; typed?: string } | { id?: undefined; name: string; date?: string; typed?: string };

/** How a refusal names one snapshot: its id and name. */
function described(entry: SnapshotEntry): string {
  return `${entry.id} ("${entry.name}")`;
}

/**
 * The one snapshot with id `id`. QEMU keeps ids unique, but nothing in the file enforces it (another
 * program, a damaged table): an id several snapshots share is refused (INVALID_ARGUMENT) — the app,
 * which tells snapshots apart by id, would otherwise act on one the user never saw.
 */
function findById(image: Qcow2Image, id: string): SnapshotEntry | undefined {
  const byId = image.snapshots.filter((entry) => entry.id === id);
  if (byId.length > 1) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${byId.length} snapshots have the id "${id}" (${byId.map((entry) => `"${entry.name}"`).join(', ')}), which qcow2 wants unique; nothing was changed. Name the one you mean by its name (on the command line: snapshot.name=NAME)`);
  }
  return byId[0];
}

/** The one snapshot named `name`; a name several snapshots share is refused (INVALID_ARGUMENT) rather than taken as the first of them. */
function findByName(image: Qcow2Image, name: string): SnapshotEntry | undefined {
  const byName = image.snapshots.filter((entry) => entry.name === name);
  if (byName.length > 1) {
    throw new Qcow2Error('INVALID_ARGUMENT', `${byName.length} snapshots are named "${name}" (ids ${byName.map((entry) => entry.id).join(', ')}); name the one you mean by its id (on the command line: snapshot.id=ID), or rename them apart`);
  }
  return byName[0];
}

/**
 * The snapshot `ref` names, or SNAPSHOT_NOT_FOUND. A bare string is a name or an id: where it is
 * one snapshot's name and another's id it is refused (INVALID_ARGUMENT), since qemu-img reads it
 * one way or the other depending on the command (`snapshot -a` by id first, `-d` by name), and
 * reverting to or deleting the other snapshot loses data.
 */
export function findSnapshot(image: Qcow2Image, ref: SnapshotRef): SnapshotEntry {
  if (typeof ref !== 'string') {
    const entry = findSnapshotBy(image, ref);
    const literal = ref.typed === undefined ? undefined : image.snapshots.find((candidate) => candidate.name === ref.typed);
    if (literal !== undefined && literal !== entry) {
      throw new Qcow2Error('INVALID_ARGUMENT', `"${ref.typed}" leads to snapshot ${described(entry)} but is also the name of snapshot ${described(literal)}; name the one you mean by its id (snapshot.id=…)`);
    }
    // The app sends the creation time it showed: a snapshot made again under the same name and id since is another one.
    if (ref.date !== undefined && snapshotIsoDate(entry) !== ref.date) {
      throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `Snapshot "${entry.name}" (id ${entry.id}) is not the one shown (taken ${ref.date}): another program replaced it; nothing was changed, look again`);
    }
    return entry;
  }
  const byName = findByName(image, ref);
  const byId = findById(image, ref);
  if (byName !== undefined && byId !== undefined && byName !== byId) {
    throw new Qcow2Error('INVALID_ARGUMENT', `"${ref}" is the name of snapshot ${described(byName)} and the id of snapshot ${described(byId)}; say which you mean (on the command line: snapshot.name=${ref} or snapshot.id=${ref})`);
  }
  const found = byName ?? byId;
  if (found !== undefined) return found;
  throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `There is no snapshot named "${ref}"`);
}

function findSnapshotBy(image: Qcow2Image, ref: Exclude<SnapshotRef, string>): SnapshotEntry {
  if (ref.id === undefined) {
    const named = findByName(image, ref.name);
    if (named !== undefined) return named;
    throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `There is no snapshot named "${ref.name}"`);
  }
  const { id, name } = ref;
  findById(image, id);
  const entry = image.snapshots.find((candidate) => candidate.id === id && (name === undefined || candidate.name === name));
  if (entry !== undefined) return entry;
  if (name === undefined) throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `There is no snapshot with id ${id}`);
  throw new Qcow2Error('SNAPSHOT_NOT_FOUND', `There is no snapshot "${name}" with id ${id} any more (another program changed the snapshots); look again`);
}

/** One state of an image (its current disk or a snapshot's) as guest bytes, with the tables that map it. */
export class Qcow2StateView implements GuestReader {
  readonly image: Qcow2Image;
  readonly l1: L1Table;
  readonly virtualSize: number;
  private readonly onClose: () => void;

  constructor(image: Qcow2Image, l1: L1Table, virtualSize: number, onClose: () => void = () => {}) {
    this.image = image;
    this.l1 = l1;
    this.virtualSize = virtualSize;
    this.onClose = onClose;
  }

  readInto(buffer: Uint8Array, guestOffset: number): void {
    this.image.readThrough(this.l1, buffer, guestOffset, this.virtualSize);
  }

  close(): void {
    this.onClose();
  }
}

/** Why a snapshot's L1 table cannot be used (QEMU's size limit, alignment, inside the file), or null. */
function snapshotL1Problem(snapshot: SnapshotEntry, clusterBytes: number, fileSize: number): string | null {
  if (snapshot.l1Size * 8 > MAX_L1_BYTES) return `Snapshot ${snapshot.name} has an L1 table that is too large`;
  if (!isAligned(snapshot.l1TableOffset, clusterBytes) || (snapshot.l1Size > 0 && snapshot.l1TableOffset === 0)) {
    return `Snapshot ${snapshot.name} has an invalid L1 table offset ${hex(snapshot.l1TableOffset)}`;
  }
  if (snapshot.l1TableOffset + snapshot.l1Size * 8 > fileSize) return `Snapshot ${snapshot.name}'s L1 table lies past the end of the file`;
  return null;
}

/**
 * The header cluster only: cluster_bits (bytes 20–23) says how long it is, so a disk with 64 KiB
 * clusters costs a 64 KiB read on open, not the 2 MiB the largest cluster size would need.
 */
export function readHeaderCluster(file: BlockFile, fileSize: number): Uint8Array {
  const probe = new Uint8Array(Math.min(fileSize, 24));
  file.read(probe, 0);
  const clusterBits = probe.length >= 24 ? view(probe).getUint32(20) : 0;
  // parseHeader rejects out-of-range cluster bits; read enough for it to see them and say so.
  const length = clusterBits >= 9 && clusterBits <= 21 ? 2 ** clusterBits : 512;
  const first = new Uint8Array(Math.min(fileSize, length));
  file.read(first, 0);
  return first;
}

/**
 * What the snapshot table can hold, from the file: every entry at its largest, within QEMU's 64 MiB,
 * read in one go as far as the file reaches and zeros past its end (as QEMU reads there) for at most
 * one entry — the one the end of the file cuts.
 */
function readSnapshotTableBytes(file: BlockFile, header: Header, fileSize: number): { bytes: Uint8Array; bytesInFile: number } {
  const largest = Math.min(header.snapshotCount * MAX_SNAPSHOT_ENTRY_BYTES, MAX_SNAPSHOT_TABLE_BYTES);
  const bytesInFile = Math.max(0, Math.min(largest, fileSize - header.snapshotsOffset));
  const bytes = new Uint8Array(Math.min(largest, bytesInFile + MAX_SNAPSHOT_ENTRY_BYTES));
  file.read(bytes.subarray(0, bytesInFile), header.snapshotsOffset);
  return { bytes, bytesInFile };
}

function loadSnapshotTable(file: BlockFile, header: Header, fileSize: number): { entries: SnapshotEntry[]; length: number } {
  if (header.snapshotCount === 0) return { entries: [], length: 0 };
  const { bytes, bytesInFile } = readSnapshotTableBytes(file, header, fileSize);
  const entries = parseSnapshotTable(bytes, header.snapshotCount, header.version, bytesInFile);
  return { entries, length: snapshotTableLength(bytes, header.snapshotCount) };
}

/** As loadSnapshotTable, but what QEMU reads past the end of the file is zeros, and broken entries are set aside for check. */
function loadSnapshotTableForCheck(file: BlockFile, header: Header, fileSize: number): { entries: SnapshotEntry[]; length: number; damage: Qcow2Image['snapshotTableDamage'] } {
  if (header.snapshotCount === 0) return { entries: [], length: 0, damage: null };
  const { bytes, bytesInFile } = readSnapshotTableBytes(file, header, fileSize);
  const table = parseSnapshotTableForCheck(bytes, bytesInFile, header.snapshotCount, header.version);
  const damaged = table.incomplete.length > 0 || table.dropped.length > 0;
  return { entries: table.entries, length: table.length, damage: damaged ? { incomplete: table.incomplete, dropped: table.dropped } : null };
}

/**
 * QEMU resolves a relative backing name against the folder of the image that names it, joined as
 * strings (block.c path_combine): `..` in the name is left to the kernel, which goes up from where a
 * linked folder leads (io/file-identity.ts).
 */
export function resolveBackingPath(imagePath: string, backingName: string): string {
  if (path.isAbsolute(backingName)) return backingName;
  // On Windows QEMU takes either separator (as path.win32 does).
  const slash = Math.max(imagePath.lastIndexOf('/'), path.sep === '\\' ? imagePath.lastIndexOf('\\') : -1);
  return slash < 0 ? backingName : `${imagePath.slice(0, slash + 1)}${backingName}`;
}

/**
 * Why a backing file name is not a path Cowbell can open, or null. QEMU reads a name with a ':'
 * before any '/' as a protocol (block.c path_has_protocol): `json:{…}` (block options), `nbd://…`,
 * `http://…`, even `file:…` — never as a file of that name. Cowbell opens backing files by path only,
 * and says so rather than calling the file missing (or reading a file QEMU would not).
 */
export function backingProtocolProblem(name: string): string | null {
  if (path.sep === '\\' && /^[A-Za-z]:[\\/]/.test(name)) return null;
  const stop = name.search(/[:/]/);
  if (stop < 0 || name[stop] !== ':') return null;
  return `The backing file is named "${name}", which QEMU reads as a "${name.slice(0, stop)}:" address (a network disk, or block options), not as a file's path; Cowbell opens backing files by their path only`;
}

function openBacking(imagePath: string, backingPath: string, format: string | null, options: OpenImageOptions): GuestReader {
  const chain = [...(options.chain ?? [imagePath]), backingPath];
  if (chain.length > MAX_BACKING_CHAIN) throw new Qcow2Error('CORRUPT', `The backing chain is longer than ${MAX_BACKING_CHAIN} images (a loop?)`);
  if (chain.slice(0, -1).some((entry) => sameFile(entry, backingPath))) {
    throw new Qcow2Error('CORRUPT', `The backing chain loops back to ${backingPath}`);
  }
  const openFile = options.openFile ?? defaultOpenFile;
  let file: BlockFile;
  try {
    file = openFile(backingPath, true);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'NOT_FOUND') {
      throw new Qcow2Error('BACKING_NOT_FOUND', `The backing file ${backingPath} does not exist`, { cause: error });
    }
    throw error;
  }
  try {
    const probe = new Uint8Array(4);
    file.read(probe, 0);
    const isQcow2 = probe[0] === 0x51 && probe[1] === 0x46 && probe[2] === 0x49 && probe[3] === 0xfb;
    if (format === 'raw' || (format === null && !isQcow2)) {
      refuseIfWrittenElsewhere(file, options.refuseInUse);
      return new RawImage(file);
    }
    if (format !== null && format !== 'qcow2') throw new Qcow2Error('UNSUPPORTED_FEATURE', `Backing file format ${format} is not supported (qcow2 and raw are)`);
    // An unlocked cipher is this image's own; an encrypted backing file is unlocked with the passphrase.
    return Qcow2Image.openFile(file, { ...options, cipher: undefined, readOnly: true, chain });
  } catch (error) {
    file.close();
    if (error instanceof Qcow2Error && error.code === 'BAD_PASSPHRASE' && !backingPassphraseErrors.has(error)) throw backingPassphraseError(error, backingPath);
    throw namingFile(error, backingPath);
  }
}

/**
 * A backing file's BAD_PASSPHRASE names it and says why: the passphrase may well open the disk
 * above it (one a user gave its own passphrase). Named once, by the file it is about.
 */
function backingPassphraseError(error: Qcow2Error, backingPath: string): Qcow2Error {
  const named = new Qcow2Error(
    'BAD_PASSPHRASE',
    `The passphrase does not open the backing file ${backingPath} (${error.message}). Cowbell reads a disk and the encrypted files below it with one passphrase; a chain whose files need different ones cannot be read here (qemu-img reads it with a secret per file)`,
    { cause: error },
  );
  backingPassphraseErrors.add(named);
  return named;
}

const backingPassphraseErrors = new WeakSet<Qcow2Error>();

/**
 * A BAD_PASSPHRASE met opening `backingPath`, a file below the disk the user named (commit and
 * rebase open the files of a chain one by one), said as reading the chain says it; anything else
 * as it is.
 */
export function namingBackingPassphrase(error: unknown, backingPath: string): unknown {
  if (error instanceof Qcow2Error && error.code === 'BAD_PASSPHRASE' && !backingPassphraseErrors.has(error)) return backingPassphraseError(error, backingPath);
  return error;
}

export function externalDataFile(header: Header): string | null {
  return dataFileName(header);
}
