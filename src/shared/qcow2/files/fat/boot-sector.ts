/**
 * A FAT volume's boot sector (BIOS parameter block) as a validated geometry: where the FATs, the
 * FAT12/16 root folder and the data clusters are, and which FAT width the volume uses. As Linux
 * does, a boot sector whose 16-bit sectors-per-FAT is 0 is FAT32 (mkfs.fat makes FAT32 volumes
 * with fewer clusters than Microsoft's minimum); otherwise the count of clusters tells FAT12 from
 * FAT16 (the "FAT12"/"FAT16" string is only a label). Every field is checked against fixed limits
 * and the volume's length before anything follows it.
 */
import { Qcow2Error } from '../../errors.ts';

export type FatWidth = 12 | 16 | 32;

export interface FatGeometry {
  width: FatWidth;
  bytesPerSector: number;
  clusterBytes: number;
  /** Offset of the FAT the reader follows (the first, or the active one when FAT32 mirroring is off). */
  fatOffset: number;
  /** Bytes of one FAT as the boot sector sizes it. */
  fatBytes: number;
  /** Data clusters: valid cluster numbers are 2 … clusterCount + 1. */
  clusterCount: number;
  /** Offset of cluster 2. */
  dataOffset: number;
  /** FAT12/16: the fixed root folder region; FAT32: null (the root is a cluster chain). */
  rootRegion: { offset: number; length: number } | null;
  /** FAT32: the root folder's first cluster; FAT12/16: 0. */
  rootCluster: number;
  /** The label the extended boot record holds, when it has one other than "NO NAME". */
  bootLabel?: string;
}

export const BOOT_SECTOR_BYTES = 512;
/** Microsoft's limits: fewer clusters than this is FAT12, then FAT16, then FAT32. */
const FAT12_MAX_CLUSTERS = 4084;
const FAT16_MAX_CLUSTERS = 65524;
/** FAT32 cluster numbers are 28 bits, the top values reserved. */
const FAT32_MAX_CLUSTERS = 0x0ffffff4;
/** Sectors per cluster is a power of two up to 128; clusters beyond 256 KiB exist nowhere. */
const MAX_CLUSTER_BYTES = 256 * 1024;
const MAX_FAT_COUNT = 4;

function corrupt(message: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `FAT boot sector: ${message}`);
}

const isPowerOfTwo = (value: number): boolean => value > 0 && (value & (value - 1)) === 0;

/** The signature check `probe` uses: a jump, the 0x55AA mark, and a BPB that could be FAT's (not NTFS's, not exFAT's). */
export function looksLikeFat(sector: Uint8Array): boolean {
  if (sector.length < BOOT_SECTOR_BYTES) return false;
  const data = new DataView(sector.buffer, sector.byteOffset, BOOT_SECTOR_BYTES);
  const jump = data.getUint8(0);
  if (jump !== 0xeb && jump !== 0xe9) return false;
  if (data.getUint16(510, true) !== 0xaa55) return false;
  const bytesPerSector = data.getUint16(11, true);
  const sectorsPerCluster = data.getUint8(13);
  const reservedSectors = data.getUint16(14, true);
  const fatCount = data.getUint8(16);
  return isPowerOfTwo(bytesPerSector) && bytesPerSector >= 512 && bytesPerSector <= 4096 && isPowerOfTwo(sectorsPerCluster) && reservedSectors >= 1 && fatCount >= 1;
}

function label(bytes: Uint8Array): string | undefined {
  let text = '';
  for (const byte of bytes) text += byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : '?';
  text = text.trimEnd();
  return text === '' || text === 'NO NAME' ? undefined : text;
}

/** Parses and validates the boot sector of a volume of `volumeLength` bytes. */
export function parseBootSector(sector: Uint8Array, volumeLength: number): FatGeometry {
  if (sector.length < BOOT_SECTOR_BYTES || !looksLikeFat(sector)) throw corrupt('no FAT signature (jump, 0x55AA, bytes per sector, reserved sectors, FAT count)');
  const data = new DataView(sector.buffer, sector.byteOffset, BOOT_SECTOR_BYTES);
  const bytesPerSector = data.getUint16(11, true);
  const sectorsPerCluster = data.getUint8(13);
  const reservedSectors = data.getUint16(14, true);
  const fatCount = data.getUint8(16);
  const rootEntryCount = data.getUint16(17, true);
  const totalSectors16 = data.getUint16(19, true);
  const sectorsPerFat16 = data.getUint16(22, true);
  const totalSectors32 = data.getUint32(32, true);
  const sectorsPerFat32 = data.getUint32(36, true);

  const clusterBytes = bytesPerSector * sectorsPerCluster;
  if (clusterBytes > MAX_CLUSTER_BYTES) throw corrupt(`clusters of ${clusterBytes} bytes`);
  if (fatCount > MAX_FAT_COUNT) throw corrupt(`${fatCount} FATs`);
  const isFat32Layout = sectorsPerFat16 === 0;
  const sectorsPerFat = isFat32Layout ? sectorsPerFat32 : sectorsPerFat16;
  const totalSectors = totalSectors16 !== 0 ? totalSectors16 : totalSectors32;
  if (sectorsPerFat === 0) throw corrupt('a FAT of 0 sectors');
  if (totalSectors === 0) throw corrupt('a volume of 0 sectors');
  const volumeBytes = totalSectors * bytesPerSector;
  if (volumeBytes > volumeLength) throw corrupt(`the volume claims ${volumeBytes} bytes but has ${volumeLength}`);

  const rootRegionBytes = rootEntryCount * 32;
  const rootSectors = Math.ceil(rootRegionBytes / bytesPerSector);
  const fatBytes = sectorsPerFat * bytesPerSector;
  const firstDataSector = reservedSectors + fatCount * sectorsPerFat + rootSectors;
  if (firstDataSector >= totalSectors) throw corrupt(`the data area starts at sector ${firstDataSector}, past the volume's ${totalSectors} sectors`);
  const clusterCount = Math.floor((totalSectors - firstDataSector) / sectorsPerCluster);
  const width: FatWidth = isFat32Layout ? 32 : clusterCount <= FAT12_MAX_CLUSTERS ? 12 : 16;
  if (clusterCount === 0) throw corrupt('no data clusters');
  if (clusterCount > (width === 32 ? FAT32_MAX_CLUSTERS : FAT16_MAX_CLUSTERS)) throw corrupt(`${clusterCount} clusters are more than FAT${width} can number`);
  if (width === 32 ? rootEntryCount !== 0 : rootEntryCount === 0) throw corrupt(`${rootEntryCount} root folder entries on FAT${width}`);
  const neededFatBytes = Math.ceil(((clusterCount + 2) * width) / 8);
  if (fatBytes < neededFatBytes) throw corrupt(`a FAT of ${fatBytes} bytes cannot hold ${clusterCount} clusters`);

  let activeFat = 0;
  let rootCluster = 0;
  let labelAt = 43;
  let signatureAt = 38;
  if (width === 32) {
    const extendedFlags = data.getUint16(40, true);
    // Bit 7: only the FAT numbered in bits 0-3 is in use (mirroring off).
    if ((extendedFlags & 0x80) !== 0) activeFat = extendedFlags & 0x0f;
    if (activeFat >= fatCount) throw corrupt(`active FAT ${activeFat} of ${fatCount}`);
    rootCluster = data.getUint32(44, true);
    if (rootCluster < 2 || rootCluster > clusterCount + 1) throw corrupt(`root folder cluster ${rootCluster} outside clusters 2-${clusterCount + 1}`);
    labelAt = 71;
    signatureAt = 66;
  }
  const extendedSignature = data.getUint8(signatureAt);
  const bootLabel = extendedSignature === 0x29 ? label(sector.subarray(labelAt, labelAt + 11)) : undefined;

  const fatOffset = (reservedSectors + activeFat * sectorsPerFat) * bytesPerSector;
  const rootOffset = (reservedSectors + fatCount * sectorsPerFat) * bytesPerSector;
  return {
    width,
    bytesPerSector,
    clusterBytes,
    fatOffset,
    fatBytes,
    clusterCount,
    dataOffset: firstDataSector * bytesPerSector,
    rootRegion: width === 32 ? null : { offset: rootOffset, length: rootRegionBytes },
    rootCluster,
    ...(bootLabel === undefined ? {} : { bootLabel }),
  };
}

/** Offset of a data cluster in the volume (the caller checked it is 2 … clusterCount + 1). */
export function clusterOffset(geometry: FatGeometry, cluster: number): number {
  return geometry.dataOffset + (cluster - 2) * geometry.clusterBytes;
}
