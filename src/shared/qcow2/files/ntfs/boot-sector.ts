/**
 * The NTFS boot sector: the volume's geometry (sector, cluster, MFT record and index block sizes)
 * and where the MFT starts. Every size is checked against fixed limits and the volume's length.
 */
import { corrupt, isPowerOfTwo, LeBytes } from './bytes.ts';

export const BOOT_SECTOR_SIZE = 512;
const OEM_ID = 'NTFS    ';
/** NTFS allows clusters up to 2 MiB (Windows 10 1709 and later). */
const MAX_CLUSTER_SIZE = 2 * 1024 * 1024;
const MAX_RECORD_SIZE = 64 * 1024;

export interface NtfsGeometry {
  bytesPerSector: number;
  clusterSize: number;
  /** Clusters the boot sector says the volume has (its last sector holds the backup boot sector). */
  clusterCount: number;
  mftRecordSize: number;
  indexBlockSize: number;
  /** Byte offset of the MFT's first record from the volume's start. */
  mftOffset: number;
  serialNumber: bigint;
}

export function hasNtfsSignature(sector: Uint8Array): boolean {
  if (sector.length < BOOT_SECTOR_SIZE) return false;
  const bytes = new LeBytes(sector, 'boot sector');
  return bytes.ascii(3, 8) === OEM_ID && bytes.u16(510) === 0xaa55;
}

/** A size given in clusters when positive, or as 2^-n bytes when negative (MFT record and index block sizes). */
function clustersOrLog2(value: number, clusterSize: number, field: string): number {
  const size = value > 0 ? value * clusterSize : value < 0 && value >= -31 ? 2 ** -value : 0;
  if (!isPowerOfTwo(size) || size < 256 || size > MAX_RECORD_SIZE) throw corrupt(`boot sector: ${field} (${value}) gives an impossible size`);
  return size;
}

export function parseBootSector(sector: Uint8Array, volumeLength: number): NtfsGeometry {
  if (!hasNtfsSignature(sector)) throw corrupt('the boot sector has no NTFS signature');
  const bytes = new LeBytes(sector, 'boot sector');
  const bytesPerSector = bytes.u16(0x0b);
  if (!isPowerOfTwo(bytesPerSector) || bytesPerSector < 256 || bytesPerSector > 4096) {
    throw corrupt(`boot sector: ${bytesPerSector} bytes per sector`);
  }
  const sectorsPerClusterField = bytes.u8(0x0d);
  // Values above 0x80 encode 2^(256 - value) sectors (clusters of 64 KiB and more).
  const sectorsPerCluster = sectorsPerClusterField <= 0x80 ? sectorsPerClusterField : 2 ** (256 - sectorsPerClusterField);
  const clusterSize = bytesPerSector * sectorsPerCluster;
  if (!isPowerOfTwo(clusterSize) || clusterSize > MAX_CLUSTER_SIZE) {
    throw corrupt(`boot sector: ${sectorsPerClusterField} sectors per cluster`);
  }
  const totalSectors = bytes.u64(0x28, 'the sector count');
  const totalBytes = totalSectors * bytesPerSector;
  if (totalBytes > volumeLength) {
    throw corrupt(`boot sector: the volume claims ${totalBytes} bytes but its partition holds ${volumeLength}`);
  }
  const clusterCount = Math.floor(totalBytes / clusterSize);
  const mftCluster = bytes.u64(0x30, 'the MFT cluster');
  if (mftCluster === 0 || mftCluster >= clusterCount) throw corrupt(`boot sector: the MFT starts at cluster ${mftCluster}, outside the volume`);
  const mftRecordSize = clustersOrLog2(bytes.i8(0x40), clusterSize, 'clusters per MFT record');
  const indexBlockSize = clustersOrLog2(bytes.i8(0x44), clusterSize, 'clusters per index block');
  if (mftRecordSize < bytesPerSector) throw corrupt(`boot sector: MFT records (${mftRecordSize} bytes) are smaller than a sector`);
  return {
    bytesPerSector,
    clusterSize,
    clusterCount,
    mftRecordSize,
    indexBlockSize,
    mftOffset: mftCluster * clusterSize,
    serialNumber: bytes.u64Big(0x48),
  };
}
