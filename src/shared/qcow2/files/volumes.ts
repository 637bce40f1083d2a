/**
 * A state's volumes and the filesystem on each: a GPT disk's partitions; else a whole-disk
 * filesystem (a FAT boot sector carries the MBR's signature too, so it is asked before the MBR);
 * else an MBR's partitions; else the whole disk as one volume with nothing Cowbell reads on it.
 * An LVM physical volume (a partition, or the whole disk) adds its logical volumes after it, each
 * named as device-mapper names it (vg-lv) and read through its segments (lvm.ts).
 * A volume whose filesystem cannot be opened keeps the error as its `problem`.
 */
import { Qcow2Error } from '../errors.ts';
import type { GuestFilesystemKind, GuestVolumeInfo } from '../model.ts';
import type { FilesystemReader, GuestFilesystem, VolumeBytes } from './filesystem.ts';
import { isLvmPhysicalVolume, readLogicalVolumes } from './lvm.ts';
import { hasGptSignature, readPartitionTable, type Partition } from './partition-table.ts';
import { segmentedVolumeBytes, volumeBytes, type CachedGuestBytes } from './volume-bytes.ts';

export interface FoundVolume {
  info: GuestVolumeInfo;
  /** Its open filesystem, when one was recognised and opened. */
  filesystem: GuestFilesystem | null;
  /** Why a recognised filesystem (or a damaged partition) cannot be read. */
  failure: Qcow2Error | null;
}

export interface FoundVolumes {
  /** Whether the disk has a partition table (then "/" lists the volumes). */
  partitioned: boolean;
  volumes: FoundVolume[];
}

export async function findVolumes(guest: CachedGuestBytes, readers: readonly FilesystemReader[]): Promise<FoundVolumes> {
  const read = (buffer: Uint8Array, offset: number): void => guest.read(buffer, offset);
  const volumes: FoundVolume[] = [];
  try {
    if (!hasGptSignature(read, guest.length)) {
      const whole = volumeBytes(guest, 0, guest.length);
      const reader = await probe(whole, readers);
      if (reader !== null) {
        volumes.push(await openVolume(whole, reader, { name: '', offset: 0, length: guest.length, table: 'none', filesystem: reader.kind }));
        return { partitioned: false, volumes };
      }
    }
    const table = readPartitionTable(read, guest.length);
    if (table === null) {
      const whole: GuestVolumeInfo = { name: '', offset: 0, length: guest.length, table: 'none', filesystem: null };
      const logical = await logicalVolumes(guest, whole, readers);
      if (logical === null) {
        volumes.push({ info: whole, filesystem: null, failure: null });
        return { partitioned: false, volumes };
      }
      // A physical volume on the whole disk: its logical volumes are the disk's volumes (or, where its metadata does not read, it is, with why).
      if (logical.length === 0 && whole.problem !== undefined) {
        volumes.push({ info: whole, filesystem: null, failure: new Qcow2Error('FILESYSTEM_CORRUPT', whole.problem) });
        return { partitioned: false, volumes };
      }
      volumes.push(...logical);
      return { partitioned: true, volumes };
    }
    for (const partition of table.partitions) {
      const volume = await partitionVolume(guest, partition, table.table, readers);
      volumes.push(volume);
      const logical = volume.info.problem === undefined && volume.filesystem === null ? await logicalVolumes(guest, volume.info, readers) : null;
      if (logical !== null) volumes.push(...logical);
    }
    return { partitioned: true, volumes };
  } catch (error) {
    for (const volume of volumes) await volume.filesystem?.close();
    throw error;
  }
}

async function partitionVolume(guest: CachedGuestBytes, partition: Partition, table: 'mbr' | 'gpt', readers: readonly FilesystemReader[]): Promise<FoundVolume> {
  const info: GuestVolumeInfo = { name: String(partition.number), offset: partition.offset, length: partition.length, table, partitionType: partition.type, filesystem: null };
  if (partition.problem !== undefined) {
    info.problem = `Partition ${partition.number}: ${partition.problem}`;
    return { info, filesystem: null, failure: new Qcow2Error('FILESYSTEM_CORRUPT', info.problem) };
  }
  const bytes = volumeBytes(guest, partition.offset, partition.length);
  const reader = await probe(bytes, readers);
  if (reader === null) return { info, filesystem: null, failure: null };
  return openVolume(bytes, reader, { ...info, filesystem: reader.kind });
}

/**
 * The logical volumes of an LVM physical volume at `physical` (marked as one), or null when it is
 * none. Metadata that cannot be read becomes the physical volume's problem.
 */
async function logicalVolumes(guest: CachedGuestBytes, physical: GuestVolumeInfo, readers: readonly FilesystemReader[]): Promise<FoundVolume[] | null> {
  const bytes = volumeBytes(guest, physical.offset, physical.length);
  if (!(await isLvmPhysicalVolume(bytes))) return null;
  let logical;
  try {
    logical = await readLogicalVolumes(bytes);
  } catch (error) {
    if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
    physical.problem = error.message;
    return [];
  }
  physical.physicalVolumeOf = logical[0]?.group ?? '';
  const found: FoundVolume[] = [];
  for (const volume of logical) {
    const segments = volume.ranges.map((range) => ({ offset: physical.offset + range.offset, length: range.length }));
    const info: GuestVolumeInfo = { name: volume.mapperName, offset: segments[0]?.offset ?? physical.offset, length: volume.size, table: physical.table, filesystem: null, logicalVolume: { group: volume.group, name: volume.name }, segments };
    if (physical.partitionType !== undefined) info.partitionType = physical.partitionType;
    if (volume.problem !== undefined) {
      info.problem = volume.problem;
      found.push({ info, filesystem: null, failure: new Qcow2Error('FILESYSTEM_UNSUPPORTED', volume.problem) });
      continue;
    }
    if (segments.length === 0) {
      found.push({ info, filesystem: null, failure: null });
      continue;
    }
    const lvBytes = segmentedVolumeBytes(guest, segments);
    let reader: FilesystemReader | null;
    try {
      reader = await probe(lvBytes, readers);
    } catch (error) {
      if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
      info.problem = error.message;
      found.push({ info, filesystem: null, failure: error });
      continue;
    }
    found.push(reader === null ? { info, filesystem: null, failure: null } : await openVolume(lvBytes, reader, { ...info, filesystem: reader.kind }));
  }
  return found;
}

async function probe(bytes: VolumeBytes, readers: readonly FilesystemReader[]): Promise<FilesystemReader | null> {
  for (const reader of readers) {
    if (await reader.probe(bytes)) return reader;
  }
  return null;
}

/** Opens the filesystem `reader` recognised; a filesystem error becomes the volume's problem, anything else (a locked or damaged image) is thrown. */
async function openVolume(bytes: VolumeBytes, reader: FilesystemReader, info: GuestVolumeInfo & { filesystem: GuestFilesystemKind }): Promise<FoundVolume> {
  try {
    const filesystem = await reader.open(bytes);
    if (filesystem.label !== undefined) info.label = filesystem.label;
    if (filesystem.caution !== undefined) info.caution = filesystem.caution;
    return { info, filesystem, failure: null };
  } catch (error) {
    if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
    info.problem = error.message;
    return { info, filesystem: null, failure: error };
  }
}

const FILESYSTEM_ERRORS = new Set<string>(['FILESYSTEM_CORRUPT', 'FILESYSTEM_UNSUPPORTED', 'NO_FILESYSTEM']);
