/** Creating a new, empty qcow2 image (the layout QEMU uses: header, refcount table and blocks, L1). */
import * as fs from 'node:fs';
import { writeFileAtomically, type AtomicFileSystem } from '../io/atomic-file.ts';
import type { BlockFile } from '../io/block-file.ts';
import { Qcow2Error } from '../errors.ts';
import { alignUp, view } from '../format/bytes.ts';
import { encodeL2, encodeRefcountTableEntry, setRefcount } from '../format/entries.ts';
import { featureNameTable, hasRoomForFeatureNameTable } from '../format/feature-name-table.ts';
import {
  EXT_BACKING_FORMAT,
  encodeString,
  serializeHeaderArea,
  V3_HEADER_LENGTH,
  type Header,
  type HeaderExtension,
} from '../format/header.ts';
import { INCOMPAT_COMPRESSION, INCOMPAT_EXTL2, MAX_L1_BYTES, MAX_VIRTUAL_SIZE } from '../format/limits.ts';
import { backingProtocolProblem, Qcow2Image, resolveBackingPath } from './image.ts';
import { readsThrough } from './backing-files.ts';
import { sameFile } from '../io/file-identity.ts';
import { silentJob, type JobContext } from '../job-context.ts';

export interface CreateOptions {
  /** Virtual size in bytes (rounded up to 512). Defaults to the backing file's size. */
  size?: number;
  clusterSize?: number;
  compat?: '0.10' | '1.1';
  refcountBits?: number;
  extendedL2?: boolean;
  backingFile?: string;
  backingFormat?: 'qcow2' | 'raw';
  preallocation?: 'off' | 'metadata';
  compressionType?: 'zlib' | 'zstd';
}

export interface ResolvedCreateOptions {
  size: number;
  clusterBits: number;
  version: 2 | 3;
  refcountOrder: number;
  extendedL2: boolean;
  backingFile: string | null;
  backingFormat: 'qcow2' | 'raw' | null;
  preallocation: 'off' | 'metadata';
  compressionType: 0 | 1;
}

export function resolveCreateOptions(options: CreateOptions, backingSize: number | null): ResolvedCreateOptions {
  const clusterSize = options.clusterSize ?? 65536;
  const clusterBits = Math.log2(clusterSize);
  if (!Number.isInteger(clusterBits) || clusterBits < 9 || clusterBits > 21) {
    throw new Qcow2Error('INVALID_ARGUMENT', 'Cluster size must be a power of two between 512 bytes and 2 MiB');
  }
  const version = options.compat === '0.10' ? 2 : 3;
  const refcountBits = options.refcountBits ?? 16;
  const refcountOrder = Math.log2(refcountBits);
  if (!Number.isInteger(refcountOrder) || refcountOrder < 0 || refcountOrder > 6) throw new Qcow2Error('INVALID_ARGUMENT', 'Refcount bits must be a power of two from 1 to 64');
  if (version === 2 && refcountBits !== 16) throw new Qcow2Error('INVALID_ARGUMENT', 'compat=0.10 images need 16 refcount bits');
  const extendedL2 = options.extendedL2 ?? false;
  if (extendedL2 && version === 2) throw new Qcow2Error('INVALID_ARGUMENT', 'Extended L2 entries need compat=1.1');
  if (extendedL2 && clusterSize < 16384) throw new Qcow2Error('INVALID_ARGUMENT', 'Extended L2 entries need a cluster size of at least 16 KiB');
  const compressionType = options.compressionType === 'zstd' ? 1 : 0;
  if (compressionType === 1 && version === 2) throw new Qcow2Error('INVALID_ARGUMENT', 'zstd compression needs compat=1.1');
  const rawSize = options.size ?? backingSize;
  if (rawSize === null || rawSize === undefined) throw new Qcow2Error('INVALID_ARGUMENT', 'A size is needed (or a backing file to take it from)');
  if (!Number.isSafeInteger(rawSize) || rawSize < 0) throw new Qcow2Error('INVALID_ARGUMENT', `Invalid size ${rawSize}`);
  const size = alignUp(rawSize, 512);
  if (size > MAX_VIRTUAL_SIZE) throw new Qcow2Error('INVALID_ARGUMENT', 'The size is too large');
  const l2Entries = clusterSize / (extendedL2 ? 16 : 8);
  if (Math.ceil(size / (l2Entries * clusterSize)) * 8 > MAX_L1_BYTES) throw new Qcow2Error('INVALID_ARGUMENT', 'The size is too large for this cluster size');
  if (options.backingFile === '') throw new Qcow2Error('INVALID_ARGUMENT', 'Expected a backing file name, got an empty string');
  if (options.backingFormat !== undefined && options.backingFile === undefined) throw new Qcow2Error('INVALID_ARGUMENT', 'A backing format needs a backing file');
  // Preallocated clusters would hide the backing file; only subclusters can stay unallocated (QEMU's rule too).
  if (options.backingFile !== undefined && options.preallocation === 'metadata' && !extendedL2) {
    throw new Qcow2Error('INVALID_ARGUMENT', 'A backing file and preallocation=metadata go together only with extended L2 entries');
  }
  return {
    size,
    clusterBits,
    version,
    refcountOrder,
    extendedL2,
    backingFile: options.backingFile ?? null,
    backingFormat: options.backingFile !== undefined ? (options.backingFormat ?? null) : null,
    preallocation: options.preallocation ?? 'off',
    compressionType,
  };
}

export interface HeaderLayout {
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
}

/** The header of a new image with these options, its tables where `layout` puts them (no snapshots). */
export function newImageHeader(options: ResolvedCreateOptions, layout: HeaderLayout): Header {
  const extensions: HeaderExtension[] = [];
  if (options.backingFormat !== null) extensions.push({ type: EXT_BACKING_FORMAT, data: encodeString(options.backingFormat) });
  if (options.version === 3 && hasRoomForFeatureNameTable(2 ** options.clusterBits)) extensions.push(featureNameTable());
  let incompatible = 0n;
  if (options.extendedL2) incompatible |= INCOMPAT_EXTL2;
  if (options.compressionType !== 0) incompatible |= INCOMPAT_COMPRESSION;
  return {
    version: options.version,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits: options.clusterBits,
    virtualSize: options.size,
    cryptMethod: 0,
    l1Size: layout.l1Size,
    l1TableOffset: layout.l1TableOffset,
    refcountTableOffset: layout.refcountTableOffset,
    refcountTableClusters: layout.refcountTableClusters,
    snapshotCount: 0,
    snapshotsOffset: 0,
    incompatibleFeatures: incompatible,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: options.refcountOrder,
    headerLength: options.version === 3 ? V3_HEADER_LENGTH : 72,
    compressionType: options.compressionType,
    unknownHeaderFields: new Uint8Array(0),
    extensions,
    backingFile: options.backingFile,
  };
}

/** Writes a fresh image's metadata into an empty file. */
export function writeEmptyImage(file: BlockFile, options: ResolvedCreateOptions): void {
  const clusterBytes = 2 ** options.clusterBits;
  const l2Entries = clusterBytes / (options.extendedL2 ? 16 : 8);
  const l1Size = Math.ceil(options.size / (l2Entries * clusterBytes));
  const l1Clusters = Math.ceil((l1Size * 8) / clusterBytes);
  const entriesPerBlock = (clusterBytes * 8) / 2 ** options.refcountOrder;
  // Header, refcount table, refcount blocks, L1: find sizes that describe themselves.
  let tableClusters = 1;
  let blocks = 1;
  for (;;) {
    const total = 1 + tableClusters + blocks + l1Clusters;
    const neededBlocks = Math.ceil(total / entriesPerBlock);
    const neededTable = Math.max(1, Math.ceil((neededBlocks * 8) / clusterBytes));
    if (neededBlocks === blocks && neededTable === tableClusters) break;
    blocks = neededBlocks;
    tableClusters = neededTable;
  }
  const tableOffset = clusterBytes;
  const firstBlockCluster = 1 + tableClusters;
  const l1Offset = (firstBlockCluster + blocks) * clusterBytes;
  const totalClusters = firstBlockCluster + blocks + l1Clusters;

  const header = newImageHeader(options, { l1Size, l1TableOffset: l1Size > 0 ? l1Offset : 0, refcountTableOffset: tableOffset, refcountTableClusters: tableClusters });
  const headerCluster = new Uint8Array(clusterBytes);
  headerCluster.set(serializeHeaderArea(header));

  const table = new Uint8Array(tableClusters * clusterBytes);
  const tableView = view(table);
  const blockBytes = new Uint8Array(blocks * clusterBytes);
  for (let block = 0; block < blocks; block++) encodeRefcountTableEntry(tableView, block * 8, (firstBlockCluster + block) * clusterBytes);
  for (let cluster = 0; cluster < totalClusters; cluster++) {
    const block = Math.floor(cluster / entriesPerBlock);
    const blockView = blockBytes.subarray(block * clusterBytes, (block + 1) * clusterBytes);
    setRefcount(blockView, view(blockView), cluster % entriesPerBlock, options.refcountOrder, 1);
  }
  file.truncate(totalClusters * clusterBytes);
  file.write(blockBytes, firstBlockCluster * clusterBytes);
  file.write(table, tableOffset);
  file.write(headerCluster, 0);
}

export interface CreateImageRequest extends CreateOptions {
  path: string;
  /** Replace an existing file (qemu-img's behaviour); by default an existing file is an error. */
  overwrite?: boolean;
  /** qemu-img create -u: a backing file that does not exist (yet) is recorded as named; the size must be given. */
  backingMayBeMissing?: boolean;
  fileSystem?: AtomicFileSystem;
}

export function createImage(request: CreateImageRequest, job: JobContext = silentJob): void {
  let backingSize: number | null = null;
  if (request.backingFile !== undefined) {
    // QEMU would read such a name as a protocol address, never as this file: the overlay would open nowhere.
    const protocol = backingProtocolProblem(request.backingFile);
    if (protocol !== null) throw new Qcow2Error('INVALID_ARGUMENT', `${protocol}: name it by a path with a folder, such as ./${request.backingFile}`);
    const backingPath = resolveBackingPath(request.path, request.backingFile);
    const missing = !fs.existsSync(backingPath);
    if (missing && request.backingMayBeMissing === true && request.size !== undefined) return writeImage(request, resolveCreateOptions(request, null), job);
    if (missing) throw new Qcow2Error('BACKING_NOT_FOUND', `The backing file ${backingPath} does not exist${request.backingMayBeMissing === true ? ' (without it, give the size)' : ''}`);
    // The new overlay would replace the very file it reads through (itself, or one below it): its data gone, a loop left.
    const replacesOwnBacking = (): never => {
      throw new Qcow2Error('INVALID_ARGUMENT', `${request.path} is the backing file of the new image (or a file it reads through); creating it would replace that file with an overlay of itself, so choose another name`);
    };
    if (sameFile(backingPath, request.path)) replacesOwnBacking();
    if (request.backingFormat === 'raw') backingSize = fs.statSync(backingPath).size;
    else {
      const backing = Qcow2Image.open(backingPath, { readOnly: true, openBacking: false });
      try {
        if (fs.existsSync(request.path) && readsThrough(backing, request.path)) replacesOwnBacking();
        backingSize = backing.virtualSize;
      } finally {
        backing.close();
      }
    }
  }
  writeImage(request, resolveCreateOptions(request, backingSize), job);
}

function writeImage(request: CreateImageRequest, options: ResolvedCreateOptions, job: JobContext): void {
  writeFileAtomically(
    request.path,
    (file) => {
      writeEmptyImage(file, options);
      if (options.preallocation === 'metadata') {
        file.flush();
        const image = Qcow2Image.openFile(file, { openBacking: false });
        preallocateMetadata(image, job);
        image.flush();
      }
    },
    { overwrite: request.overwrite ?? false, fileSystem: request.fileSystem },
  );
}

/** preallocation=metadata: every guest cluster gets its L2 entry and a host cluster (sparse). */
function preallocateMetadata(image: Qcow2Image, job: JobContext): void {
  const clusters = Math.ceil(image.virtualSize / image.clusterBytes);
  let end = image.file.size();
  for (let cluster = 0; cluster < clusters; cluster++) {
    if (cluster % 4096 === 0) {
      job.throwIfCancelled();
      job.progress('preallocating', cluster, clusters, 'steps');
    }
    const clusterStart = cluster * image.clusterBytes;
    const slot = image.writableL2Slot(clusterStart);
    const hostOffset = image.refcounts.allocate(1);
    end = Math.max(end, hostOffset + image.clusterBytes);
    if (!image.l2Format.extendedL2) image.setL2Normal(slot, hostOffset);
    else {
      // Extended L2 (as QEMU does, backing file or not): the cluster is reserved, its subclusters stay
      // unallocated, so they read as zeros or show the backing data through until written.
      encodeL2(slot.table.view, slot.position, image.l2Format, { hostOffset, copied: true, zero: false, allocMask: 0, zeroMask: 0 });
      slot.table.dirty = true;
    }
  }
  image.flush();
  if (image.file.size() < end) image.file.truncate(end);
}
