/** `qemu-img info`: what an image is, with qemu-img's JSON key names. */
import * as fs from 'node:fs';
import { Qcow2Error, toQcow2Error } from '../errors.ts';
import { readCowbellRecord } from '../format/cowbell-record.ts';
import { backingFormat, findExtension, EXT_BITMAPS, EXT_CRYPTO_HEADER } from '../format/header.ts';
import { AUTOCLEAR_BITMAPS, COMPAT_LAZY_REFCOUNTS, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, INCOMPAT_EXTL2 } from '../format/limits.ts';
import { parseBitmapDirectory, parseBitmapsExtension } from '../format/bitmap-directory.ts';
import { snapshotVmStateSize, type SnapshotEntry } from '../format/snapshot-table.ts';
import { Qcow2Image, externalDataFile, type OpenImageOptions } from './image.ts';
import type { EncryptInfo, ImageInfo, Qcow2SpecificInfo, SnapshotInfo } from '../model.ts';
import { parseCryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import { LUKS_PHDR_BYTES, LUKS_SECTOR_BYTES, parseLuksHeader, type LuksHeader } from '../format/luks-header.ts';
import { unencryptedData } from './unencrypted-data.ts';
import { dataFileIsRaw, hasExternalData } from './data-file.ts';

export function snapshotInfo(entry: SnapshotEntry): SnapshotInfo {
  const info: SnapshotInfo = {
    id: entry.id,
    name: entry.name,
    'vm-state-size': snapshotVmStateSize(entry),
    'date-sec': entry.dateSec,
    'date-nsec': entry.dateNsec,
    'vm-clock-sec': Number(entry.vmClockNsec / 1_000_000_000n),
    'vm-clock-nsec': Number(entry.vmClockNsec % 1_000_000_000n),
  };
  if (entry.icount !== null && entry.icount !== 0xffffffffffffffffn) info.icount = Number(entry.icount);
  const note = readCowbellRecord(entry)?.note;
  if (note !== undefined && note !== '') info.note = note;
  return info;
}

export function imageInfo(image: Qcow2Image, filename: string): ImageInfo {
  const header = image.header;
  let actualSize: number;
  try {
    const stat = fs.statSync(filename);
    actualSize = stat.blocks !== undefined ? stat.blocks * 512 : stat.size;
  } catch (error) {
    throw toQcow2Error(error, filename);
  }
  const info: ImageInfo = {
    filename,
    format: 'qcow2',
    'virtual-size': header.virtualSize,
    'actual-size': actualSize,
    'cluster-size': image.clusterBytes,
    'dirty-flag': (header.incompatibleFeatures & INCOMPAT_DIRTY) !== 0n,
    'format-specific': {
      type: 'qcow2',
      data: {
        compat: header.version === 2 ? '0.10' : '1.1',
        'compression-type': header.compressionType === 1 ? 'zstd' : 'zlib',
        'refcount-bits': 2 ** header.refcountOrder,
        ...(header.version === 2
          ? {}
          : {
              'lazy-refcounts': (header.compatibleFeatures & COMPAT_LAZY_REFCOUNTS) !== 0n,
              corrupt: (header.incompatibleFeatures & INCOMPAT_CORRUPT) !== 0n,
              'extended-l2': (header.incompatibleFeatures & INCOMPAT_EXTL2) !== 0n,
            }),
      },
    },
  };
  if (header.cryptMethod !== 0) {
    info.encrypted = true;
    const luks = header.cryptMethod === 2 || findExtension(header, EXT_CRYPTO_HEADER) !== undefined;
    info['format-specific'].data.encrypt = luks ? luksInfo(image) : { format: 'aes' };
    const unencrypted = unencryptedData(image);
    if (unencrypted !== null) {
      info['unencrypted-bytes'] = unencrypted.guestBytes;
      info['unencrypted-clusters'] = unencrypted.clusters;
    }
  }
  const bitmaps = bitmapsOf(image);
  if (bitmaps !== null) {
    // qemu-img's key order: after lazy-refcounts, before refcount-bits.
    const { compat, 'compression-type': compressionType, 'lazy-refcounts': lazyRefcounts, ...rest } = info['format-specific'].data;
    info['format-specific'].data = { compat, 'compression-type': compressionType, ...(lazyRefcounts === undefined ? {} : { 'lazy-refcounts': lazyRefcounts }), bitmaps, ...rest };
  }
  const dataFile = externalDataFile(header);
  if (dataFile !== null) info['format-specific'].data['data-file'] = dataFile;
  if (hasExternalData(header)) info['format-specific'].data['data-file-raw'] = dataFileIsRaw(header);
  if (header.backingFile !== null) {
    info['backing-filename'] = header.backingFile;
    info['full-backing-filename'] = image.backingPath ?? header.backingFile;
    const format = backingFormat(header);
    if (format !== null) info['backing-filename-format'] = format;
  }
  if (image.snapshots.length > 0) info.snapshots = image.snapshots.map(snapshotInfo);
  // Opened read-only to be read: say so only where something else keeps it so, the image itself or its file.
  const readOnlyReason = image.readOnly && image.readOnlyReason !== null && image.readOnlyReason !== 'opened read-only' ? image.readOnlyReason : unwritableReason(image.file.path);
  if (readOnlyReason !== null) info['read-only-reason'] = readOnlyReason;
  if (image.file.inUseElsewhere === true) info['in-use'] = true;
  return info;
}

/** The image's persistent bitmaps, or null where it keeps none (or their directory cannot be read: check says why). */
function bitmapsOf(image: Qcow2Image): Qcow2SpecificInfo['bitmaps'] | null {
  const extension = findExtension(image.header, EXT_BITMAPS);
  if (extension === undefined || (image.header.autoclearFeatures & AUTOCLEAR_BITMAPS) === 0n) return null;
  try {
    const { count, directoryBytes, directoryOffset } = parseBitmapsExtension(extension.data);
    if (count === 0) return null;
    const directory = new Uint8Array(directoryBytes);
    if (image.file.read(directory, directoryOffset) < directoryBytes) return null;
    return parseBitmapDirectory(directory, count);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code !== 'IO_ERROR') return null;
    throw error;
  }
}

/**
 * A LUKS image's encryption as qemu-img info describes it, from the LUKS header (which is not
 * secret: no passphrase needed). Just the format where the header cannot be read.
 */
function luksInfo(image: Qcow2Image): EncryptInfo {
  let luks: LuksHeader;
  try {
    const extension = findExtension(image.header, EXT_CRYPTO_HEADER);
    if (extension === undefined) return { format: 'luks' };
    const area = parseCryptoHeaderExtension(extension.data, image.clusterBytes);
    const bytes = new Uint8Array(LUKS_PHDR_BYTES);
    image.file.read(bytes, area.offset);
    luks = parseLuksHeader(bytes, area.length);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code !== 'IO_ERROR') return { format: 'luks' };
    throw error;
  }
  const { cipher } = luks;
  const aesKeyBytes = cipher.mode === 'xts' ? cipher.keyBytes / 2 : cipher.keyBytes;
  // qemu-img's key order, so the two JSON outputs read alike.
  return {
    'ivgen-alg': cipher.ivGenerator,
    'hash-alg': luks.hash,
    'cipher-alg': `${cipher.name}-${aesKeyBytes * 8}`,
    uuid: luks.uuid,
    ...(cipher.ivHash === null ? {} : { 'ivgen-hash-alg': cipher.ivHash }),
    format: 'luks',
    'cipher-mode': cipher.mode,
    slots: luks.keySlots.map((slot) => {
      const keyOffset = slot.keyMaterialOffsetSectors * LUKS_SECTOR_BYTES;
      return slot.active ? { active: true, iters: slot.iterations, 'key-offset': keyOffset, stripes: slot.stripes } : { active: false, 'key-offset': keyOffset };
    }),
    'payload-offset': luks.payloadOffsetSectors * LUKS_SECTOR_BYTES,
    'master-key-iters': luks.masterKeyDigestIterations,
  };
}

/** Opens the image read-only (without its backing chain) and describes it. */
export function readImageInfo(filePath: string, options: OpenImageOptions = {}): ImageInfo {
  // Like qemu-img info, neither the backing chain nor the data file is needed (or opened).
  const image = Qcow2Image.open(filePath, { ...options, readOnly: true, openBacking: false, openDataFile: false });
  try {
    return imageInfo(image, filePath);
  } finally {
    image.close();
  }
}

export { Qcow2Error };

/**
 * Why the file cannot be written, as a phrase (a read-only file system, its permissions), or null
 * when it can (or that cannot be told). A disk on a read-only mount looked writable in the app and
 * every change failed only once asked for.
 */
export function unwritableReason(filePath: string, access: (path: string, mode: number) => void = fs.accessSync): string | null {
  try {
    access(filePath, fs.constants.W_OK);
    return null;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EROFS') return 'its file system is read-only';
    if (code === 'EACCES' || code === 'EPERM') return 'you may not write this file (its permissions)';
    return null;
  }
}
