/**
 * The qcow2 header and its extensions (docs/interop/qcow2.txt, "Header" and "Header extensions").
 * Pure functions over the first cluster's bytes: every field is checked here, once.
 */
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned, readU64Number, view, writeU64Number } from './bytes.ts';
import { decodeByteString, encodeByteString } from './byte-string.ts';
import {
  INCOMPAT_COMPRESSION,
  INCOMPAT_EXTL2,
  INCOMPAT_KNOWN,
  MAX_BACKING_FILE_NAME,
  MAX_CLUSTER_BITS,
  MAX_L1_BYTES,
  MAX_REFTABLE_BYTES,
  MAX_SNAPSHOTS,
  MAX_VIRTUAL_SIZE,
  MIN_CLUSTER_BITS,
  QCOW2_MAGIC,
} from './limits.ts';

export const EXT_END = 0x00000000;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_BITMAPS = 0x23852875;
export const EXT_CRYPTO_HEADER = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

export const V2_HEADER_LENGTH = 72;
export const V3_HEADER_LENGTH = 112;

export interface HeaderExtension {
  type: number;
  data: Uint8Array;
}

export interface FeatureName {
  kind: 'incompatible' | 'compatible' | 'autoclear';
  bit: number;
  name: string;
}

export interface Header {
  version: 2 | 3;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  virtualSize: number;
  cryptMethod: 0 | 1 | 2;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  snapshotCount: number;
  snapshotsOffset: number;
  incompatibleFeatures: bigint;
  compatibleFeatures: bigint;
  autoclearFeatures: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: 0 | 1;
  /** Header bytes past the fields we know (v3 header_length > 112), kept as they are. */
  unknownHeaderFields: Uint8Array;
  /** All extensions in file order, known and unknown, as raw bytes. */
  extensions: HeaderExtension[];
  backingFile: string | null;
}

export function extendedL2(header: Header): boolean {
  return (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n;
}

export function clusterSize(header: Header): number {
  return 2 ** header.clusterBits;
}

/** A name in the file (snapshot name or id, backing file name): lossless, bytes that are not UTF-8 kept (byte-string.ts). */
export const decodeString = decodeByteString;
export const encodeString = encodeByteString;

export interface ParseHeaderOptions {
  /**
   * For check only: accept what a check reports and a repair fixes, as QEMU opens it — no
   * refcount table (a rebuild makes one) and a snapshot table past the end of the file (read as
   * zeros, its entries dropped by the repair).
   */
  forCheck?: boolean;
}

/** Parses the header from the start of the file. `firstBytes` holds at least min(file size, cluster size) bytes. */
export function parseHeader(firstBytes: Uint8Array, fileSize: number, options: ParseHeaderOptions = {}): Header {
  if (firstBytes.length < 4) throw new Qcow2Error('TRUNCATED', 'The file is too short to be a disk image');
  const data = view(firstBytes);
  if (data.getUint32(0) !== QCOW2_MAGIC) throw new Qcow2Error('BAD_MAGIC', 'Not a qcow2 image (the file does not start with the bytes QFI and 0xfb)');
  if (firstBytes.length < V2_HEADER_LENGTH) throw new Qcow2Error('TRUNCATED', 'The qcow2 header is cut short: the file is truncated');
  const version = data.getUint32(4);
  if (version !== 2 && version !== 3) {
    throw new Qcow2Error('UNSUPPORTED_VERSION', `qcow2 version ${version} is not supported (only versions 2 and 3)`);
  }
  const clusterBits = data.getUint32(20);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw new Qcow2Error('CORRUPT', `Cluster size 2^${clusterBits} is out of range (512 B to 2 MiB)`);
  }
  const clusterBytes = 2 ** clusterBits;
  const header: Header = {
    version,
    backingFileOffset: readU64Number(data, 8, 'Backing file offset'),
    backingFileSize: data.getUint32(16),
    clusterBits,
    virtualSize: readU64Number(data, 24, 'Virtual size'),
    cryptMethod: 0,
    l1Size: data.getUint32(36),
    l1TableOffset: readU64Number(data, 40, 'L1 table offset'),
    refcountTableOffset: readU64Number(data, 48, 'Refcount table offset'),
    refcountTableClusters: data.getUint32(56),
    snapshotCount: data.getUint32(60),
    snapshotsOffset: readU64Number(data, 64, 'Snapshot table offset'),
    incompatibleFeatures: 0n,
    compatibleFeatures: 0n,
    autoclearFeatures: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: 0,
    unknownHeaderFields: new Uint8Array(0),
    extensions: [],
    backingFile: null,
  };
  const cryptMethod = data.getUint32(32);
  if (cryptMethod > 2) throw new Qcow2Error('UNSUPPORTED_FEATURE', `Unknown encryption method ${cryptMethod}`);
  header.cryptMethod = cryptMethod as 0 | 1 | 2;

  if (version === 3) {
    if (firstBytes.length < 104) throw new Qcow2Error('TRUNCATED', 'The qcow2 v3 header is cut short: the file is truncated');
    header.incompatibleFeatures = data.getBigUint64(72);
    header.compatibleFeatures = data.getBigUint64(80);
    header.autoclearFeatures = data.getBigUint64(88);
    header.refcountOrder = data.getUint32(96);
    header.headerLength = data.getUint32(100);
    if (header.headerLength < 104 || header.headerLength % 8 !== 0 || header.headerLength > clusterBytes) {
      throw new Qcow2Error('CORRUPT', `Header length ${header.headerLength} is invalid`);
    }
    if (firstBytes.length < header.headerLength) throw new Qcow2Error('TRUNCATED', 'The qcow2 header is cut short: the file is truncated');
    if (header.headerLength > 104) {
      const compressionType = firstBytes[104] ?? 0;
      if (compressionType > 1) throw new Qcow2Error('UNSUPPORTED_FEATURE', `Unknown compression type ${compressionType}`);
      header.compressionType = compressionType as 0 | 1;
    }
    if (header.headerLength > V3_HEADER_LENGTH) header.unknownHeaderFields = firstBytes.slice(V3_HEADER_LENGTH, header.headerLength);
  }
  if (header.refcountOrder > 6) throw new Qcow2Error('CORRUPT', `Refcount width 2^${header.refcountOrder} bits is invalid (at most 64)`);
  if (version === 2 && header.refcountOrder !== 4) throw new Qcow2Error('CORRUPT', 'A version 2 image must use 16-bit refcounts');
  const hasCompressionBit = (header.incompatibleFeatures & INCOMPAT_COMPRESSION) !== 0n;
  if (hasCompressionBit !== (header.compressionType !== 0)) {
    throw new Qcow2Error('CORRUPT', 'The compression type and its incompatible-feature bit disagree');
  }

  header.extensions = parseExtensions(firstBytes, header, clusterBytes);
  const unknownIncompatible = header.incompatibleFeatures & ~INCOMPAT_KNOWN;
  if (unknownIncompatible !== 0n) {
    const names = featureNames(header)
      .filter((feature) => feature.kind === 'incompatible' && (unknownIncompatible & (1n << BigInt(feature.bit))) !== 0n)
      .map((feature) => feature.name);
    const what = names.length > 0 ? names.join(', ') : `bits ${hex(unknownIncompatible)}`;
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `The image uses features Cowbell does not know (${what}); it will not be opened`);
  }

  validateLayout(header, clusterBytes, fileSize, options.forCheck === true);

  if (header.backingFileOffset !== 0) {
    if (header.backingFileSize > MAX_BACKING_FILE_NAME) throw new Qcow2Error('CORRUPT', 'The backing file name is too long');
    const end = header.backingFileOffset + header.backingFileSize;
    if (end > clusterBytes || end > firstBytes.length) throw new Qcow2Error('CORRUPT', 'The backing file name lies outside the header cluster');
    // QEMU reads the name as a C string: it ends at the first NUL, and an empty name means no backing file.
    const nameBytes = firstBytes.subarray(header.backingFileOffset, end);
    const nul = nameBytes.indexOf(0);
    const name = decodeString(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes);
    header.backingFile = name.length > 0 ? name : null;
  }
  return header;
}

function parseExtensions(firstBytes: Uint8Array, header: Header, clusterBytes: number): HeaderExtension[] {
  const extensions: HeaderExtension[] = [];
  const limit = Math.min(header.backingFileOffset !== 0 ? header.backingFileOffset : clusterBytes, clusterBytes, firstBytes.length);
  let position = header.headerLength;
  const data = view(firstBytes);
  while (position + 8 <= limit) {
    const type = data.getUint32(position);
    const length = data.getUint32(position + 4);
    if (type === EXT_END) return extensions;
    const start = position + 8;
    // qemu-img refuses the image alike ("Header extension too large"), whatever the extension's type.
    if (length > limit - start) throw new Qcow2Error('CORRUPT', `Header extension ${hex(type)} is too large: its ${length} bytes run past the header area (${limit} bytes)`);
    extensions.push({ type, data: firstBytes.slice(start, start + length) });
    position = start + Math.ceil(length / 8) * 8;
  }
  // Missing end marker: QEMU accepts the extensions found up to the limit.
  return extensions;
}

function validateLayout(header: Header, clusterBytes: number, fileSize: number, forCheck: boolean): void {
  if (header.virtualSize > MAX_VIRTUAL_SIZE) throw new Qcow2Error('CORRUPT', `Virtual size ${header.virtualSize} is too large`);
  if (header.l1Size * 8 > MAX_L1_BYTES) throw new Qcow2Error('CORRUPT', `L1 table of ${header.l1Size} entries exceeds QEMU's limit`);
  const l2Entries = clusterBytes / (extendedL2(header) ? 16 : 8);
  const needed = Math.ceil(header.virtualSize / (l2Entries * clusterBytes));
  if (header.l1Size < needed) throw new Qcow2Error('CORRUPT', `L1 table has ${header.l1Size} entries but the disk size needs ${needed}`);
  if (header.l1Size > 0) {
    checkTable('L1 table', header.l1TableOffset, header.l1Size * 8, clusterBytes, fileSize);
  }
  if (header.refcountTableClusters === 0) {
    if (!forCheck) throw new Qcow2Error('CORRUPT', 'The image has no refcount table');
  } else {
    if (header.refcountTableClusters * clusterBytes > MAX_REFTABLE_BYTES) {
      throw new Qcow2Error('CORRUPT', `Refcount table of ${header.refcountTableClusters} clusters exceeds QEMU's limit`);
    }
    try {
      checkTable('Refcount table', header.refcountTableOffset, header.refcountTableClusters * clusterBytes, clusterBytes, fileSize);
    } catch (error) {
      // QEMU's check reads such an image and rebuilds its refcounts; so does Cowbell's: for check
      // the image has no refcount table (every cluster then counts as a refcount too low).
      if (!forCheck) throw error;
      header.refcountTableClusters = 0;
    }
  }
  if (header.snapshotCount > MAX_SNAPSHOTS) throw new Qcow2Error('CORRUPT', `${header.snapshotCount} snapshots exceed QEMU's limit`);
  if (header.snapshotCount > 0) checkTable('Snapshot table', header.snapshotsOffset, 40 * header.snapshotCount, clusterBytes, forCheck ? Infinity : fileSize);
}

function checkTable(what: string, offset: number, length: number, clusterBytes: number, fileSize: number): void {
  if (!isAligned(offset, clusterBytes) || offset === 0) throw new Qcow2Error('CORRUPT', `${what} offset ${hex(offset)} is invalid`);
  if (offset + length > fileSize) throw new Qcow2Error('TRUNCATED', `${what} at ${hex(offset)} lies past the end of the file: the image is truncated`);
}


export function featureNames(header: Header): FeatureName[] {
  const names: FeatureName[] = [];
  for (const extension of header.extensions) {
    if (extension.type !== EXT_FEATURE_TABLE) continue;
    for (let position = 0; position + 48 <= extension.data.length; position += 48) {
      const kindCode = extension.data[position] ?? 255;
      const kind = kindCode === 0 ? 'incompatible' : kindCode === 1 ? 'compatible' : kindCode === 2 ? 'autoclear' : null;
      if (kind === null) continue;
      const nameBytes = extension.data.subarray(position + 2, position + 48);
      const nul = nameBytes.indexOf(0);
      names.push({ kind, bit: extension.data[position + 1] ?? 0, name: decodeString(nul >= 0 ? nameBytes.subarray(0, nul) : nameBytes) });
    }
  }
  return names;
}

export function findExtension(header: Header, type: number): HeaderExtension | undefined {
  return header.extensions.find((extension) => extension.type === type);
}

export function backingFormat(header: Header): string | null {
  const extension = findExtension(header, EXT_BACKING_FORMAT);
  return extension ? decodeString(extension.data) : null;
}

export function dataFileName(header: Header): string | null {
  const extension = findExtension(header, EXT_DATA_FILE);
  return extension ? decodeString(extension.data) : null;
}

/** The fixed fields, written over the first bytes of the file in one write. */
export function serializeFixedHeader(header: Header): Uint8Array {
  const length = header.version === 2 ? V2_HEADER_LENGTH : header.headerLength;
  const bytes = new Uint8Array(length);
  const data = view(bytes);
  data.setUint32(0, QCOW2_MAGIC);
  data.setUint32(4, header.version);
  writeU64Number(data, 8, header.backingFileOffset);
  data.setUint32(16, header.backingFileSize);
  data.setUint32(20, header.clusterBits);
  writeU64Number(data, 24, header.virtualSize);
  data.setUint32(32, header.cryptMethod);
  data.setUint32(36, header.l1Size);
  writeU64Number(data, 40, header.l1TableOffset);
  writeU64Number(data, 48, header.refcountTableOffset);
  data.setUint32(56, header.refcountTableClusters);
  data.setUint32(60, header.snapshotCount);
  writeU64Number(data, 64, header.snapshotsOffset);
  if (header.version === 3) {
    data.setBigUint64(72, header.incompatibleFeatures);
    data.setBigUint64(80, header.compatibleFeatures);
    data.setBigUint64(88, header.autoclearFeatures);
    data.setUint32(96, header.refcountOrder);
    data.setUint32(100, header.headerLength);
    if (header.headerLength > 104) bytes[104] = header.compressionType;
    if (header.headerLength > V3_HEADER_LENGTH) bytes.set(header.unknownHeaderFields.subarray(0, header.headerLength - V3_HEADER_LENGTH), V3_HEADER_LENGTH);
  }
  return bytes;
}

/**
 * The whole header area: fixed fields, every extension (unknown ones kept), the end marker and
 * the backing file name. Sets backingFileOffset/Size to where the name lands. Must fit one cluster.
 */
export function serializeHeaderArea(header: Header): Uint8Array {
  const clusterBytes = clusterSize(header);
  const fixedLength = header.version === 2 ? V2_HEADER_LENGTH : header.headerLength;
  let length = fixedLength;
  for (const extension of header.extensions) length += 8 + Math.ceil(extension.data.length / 8) * 8;
  length += 8;
  const backingName = header.backingFile !== null ? encodeString(header.backingFile) : null;
  if (backingName !== null) {
    if (backingName.length > MAX_BACKING_FILE_NAME) throw new Qcow2Error('INVALID_ARGUMENT', 'The backing file name is too long (1023 bytes at most)');
    header.backingFileOffset = length;
    header.backingFileSize = backingName.length;
    length += backingName.length;
  } else {
    header.backingFileOffset = 0;
    header.backingFileSize = 0;
  }
  if (length > clusterBytes) throw new Qcow2Error('INVALID_ARGUMENT', 'The header, its extensions and the backing file name do not fit in one cluster');
  const bytes = new Uint8Array(length);
  bytes.set(serializeFixedHeader(header), 0);
  const data = view(bytes);
  let position = fixedLength;
  for (const extension of header.extensions) {
    data.setUint32(position, extension.type);
    data.setUint32(position + 4, extension.data.length);
    bytes.set(extension.data, position + 8);
    position += 8 + Math.ceil(extension.data.length / 8) * 8;
  }
  position += 8;
  if (backingName !== null) bytes.set(backingName, position);
  return bytes;
}

export function checkL1Size(l1Size: number): void {
  if (l1Size * 8 > MAX_L1_BYTES) throw new Qcow2Error('INVALID_ARGUMENT', 'The disk is too large for this cluster size');
}
