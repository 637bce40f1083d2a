/**
 * A state's volumes and the filesystem on each: a GPT disk's partitions; else a whole-disk
 * filesystem (a FAT boot sector carries the MBR's signature too, so it is asked before the MBR);
 * else an MBR's partitions; else the whole disk as one volume with nothing Cowbell reads on it.
 * An LVM physical volume (a partition, or the whole disk) adds its logical volumes after it, each
 * named as device-mapper names it (vg-lv) and read through its segments (lvm.ts).
 * A volume whose filesystem cannot be opened keeps the error as its `problem`. An encrypted volume
 * a passphrase given opens adds what it holds after every other (encrypted-volumes.ts).
 */
import { Qcow2Error } from '../errors.ts';
import type { GuestFilesystemKind, GuestVolumeInfo } from '../model.ts';
import type { FilesystemReader, GuestFilesystem, VolumeBytes } from './filesystem.ts';
import { unlockedVolumes, type VolumeUnlockOptions } from './encrypted-volumes.ts';
import { isLvmPhysicalVolume, logicalVolumesOf, physicalVolumeUuids, readPhysicalVolume, readPhysicalVolumeLabel, type PhysicalVolume } from './lvm.ts';
import { hasGptSignature, readPartitionTable, type Partition } from './partition-table.ts';
import type { VolumeOpenContext } from './replay-memo.ts';
import { volumeContent } from './volume-content.ts';
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

/**
 * The state's volumes, then those inside the encrypted ones `unlock`'s passphrases open
 * (encrypted-volumes.ts); a disk encrypted whole is then listed as a volume named "encrypted".
 */
export async function findVolumes(guest: CachedGuestBytes, readers: readonly FilesystemReader[], unlock: VolumeUnlockOptions = {}): Promise<FoundVolumes> {
  const found = await findPlainVolumes(guest, readers);
  try {
    const inside = await unlockedVolumes(guest, found.volumes, unlock, (disk) => findPlainVolumes(disk, readers));
    if (inside.length === 0) return found;
    const whole = found.volumes.find((volume) => volume.info.name === '');
    if (whole !== undefined) {
      whole.info.name = 'encrypted';
      for (const volume of inside) if (volume.info.encryptedIn === '') volume.info.encryptedIn = 'encrypted';
    }
    return { partitioned: true, volumes: [...found.volumes, ...inside] };
  } catch (error) {
    for (const volume of found.volumes) await volume.filesystem?.close();
    throw error;
  }
}

async function findPlainVolumes(guest: CachedGuestBytes, readers: readonly FilesystemReader[]): Promise<FoundVolumes> {
  const read = (buffer: Uint8Array, offset: number): void => guest.read(buffer, offset);
  const volumes: FoundVolume[] = [];
  try {
    if (!hasGptSignature(read, guest.length)) {
      const whole = volumeBytes(guest, 0, guest.length);
      const reader = await probe(whole, readers);
      if (reader !== null) {
        volumes.push(await openVolume(whole, reader, openContext(guest, [{ offset: 0, length: guest.length }]), { name: '', offset: 0, length: guest.length, table: 'none', filesystem: reader.kind }));
        return { partitioned: false, volumes };
      }
    }
    const table = readPartitionTable(read, guest.length);
    if (table === null) {
      const whole: GuestVolumeInfo = { name: '', offset: 0, length: guest.length, table: 'none', filesystem: null };
      const isPhysical = await isLvmPhysicalVolume(volumeBytes(guest, 0, guest.length));
      if (!isPhysical) {
        volumes.push(await unread(whole, volumeBytes(guest, 0, guest.length)));
        return { partitioned: false, volumes };
      }
      const wholePv = await physicalVolumeAt(guest, whole);
      const logical = await logicalVolumes(guest, wholePv === null ? [] : [wholePv], readers);
      // A physical volume on the whole disk: its logical volumes are the disk's volumes (or, where its metadata does not read, it is, with why).
      if (logical.length === 0 && whole.problem !== undefined) {
        volumes.push({ info: whole, filesystem: null, failure: new Qcow2Error('FILESYSTEM_CORRUPT', whole.problem) });
        return { partitioned: false, volumes };
      }
      volumes.push(...logical);
      return { partitioned: true, volumes };
    }
    const physical: PhysicalVolumeAt[] = [];
    for (const partition of table.partitions) {
      const volume = await partitionVolume(guest, partition, table.table, readers);
      volumes.push(volume);
      const pv = volume.info.problem === undefined && volume.filesystem === null ? await physicalVolumeAt(guest, volume.info) : null;
      if (pv !== null) physical.push(pv);
    }
    // After every partition: a volume group may span several of them.
    volumes.push(...(await logicalVolumes(guest, physical, readers)));
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
  if (reader === null) return unread(info, bytes, partition.type);
  return openVolume(bytes, reader, openContext(guest, [partition]), { ...info, filesystem: reader.kind });
}

/**
 * An LVM physical volume found on the disk: where it lies (its volume's info), its UUID, and its
 * group's metadata as its own copy gives it (null where that copy does not read: another PV of
 * the group may hold a good one).
 */
interface PhysicalVolumeAt {
  info: GuestVolumeInfo;
  uuid: string;
  pv: PhysicalVolume | null;
  error: Qcow2Error | null;
}

/** The LVM physical volume at `info`, or null when it is none; a label that does not read becomes the volume's problem. */
async function physicalVolumeAt(guest: CachedGuestBytes, info: GuestVolumeInfo): Promise<PhysicalVolumeAt | null> {
  const bytes = volumeBytes(guest, info.offset, info.length);
  if (!(await isLvmPhysicalVolume(bytes))) return null;
  let uuid: string;
  try {
    uuid = (await readPhysicalVolumeLabel(bytes)).uuid;
  } catch (error) {
    if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
    info.problem = error.message;
    return null;
  }
  try {
    return { info, uuid, pv: await readPhysicalVolume(bytes), error: null };
  } catch (error) {
    if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
    return { info, uuid, pv: null, error };
  }
}

/**
 * The logical volumes of the groups whose physical volumes were found, each read through its
 * pieces wherever on the disk they lie; a group's newest good metadata (highest seqno among its
 * PVs' copies) says. A PV whose own copy does not read belongs to the group that lists it; one no
 * good copy lists keeps its error as its problem.
 */
async function logicalVolumes(guest: CachedGuestBytes, physical: readonly PhysicalVolumeAt[], readers: readonly FilesystemReader[]): Promise<FoundVolume[]> {
  const newest = new Map<string, PhysicalVolumeAt & { pv: PhysicalVolume }>();
  for (const found of physical) {
    if (found.pv === null) continue;
    const known = newest.get(found.pv.group.id);
    if (known === undefined || found.pv.group.seqno > known.pv.group.seqno) newest.set(found.pv.group.id, { ...found, pv: found.pv });
  }
  const members = new Map<string, string>();
  for (const { pv } of newest.values()) for (const uuid of physicalVolumeUuids(pv.metadata)) members.set(uuid, pv.group.name);
  for (const found of physical) {
    const group = found.pv?.group.name ?? members.get(found.uuid);
    if (group !== undefined) found.info.physicalVolumeOf = group;
    else found.info.problem = found.error?.message ?? 'an LVM physical volume whose group Cowbell cannot read';
  }
  const volumes: FoundVolume[] = [];
  for (const { pv, info: first } of newest.values()) {
    const groupUuids = new Set(physicalVolumeUuids(pv.metadata));
    const locate = (uuid: string): { offset: number; length: number } | null => {
      const place = groupUuids.has(uuid) ? physical.find((found) => found.uuid === uuid)?.info : undefined;
      return place === undefined ? null : { offset: place.offset, length: place.length };
    };
    let logical;
    try {
      logical = logicalVolumesOf(pv.metadata, locate);
    } catch (error) {
      if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
      first.problem = error.message;
      continue;
    }
    for (const volume of logical) {
      const segments = volume.ranges.map((range) => ({ offset: range.offset, length: range.length }));
      const info: GuestVolumeInfo = { name: volume.mapperName, offset: segments[0]?.offset ?? first.offset, length: volume.size, table: first.table, filesystem: null, logicalVolume: { group: volume.group, name: volume.name }, segments };
      if (first.partitionType !== undefined) info.partitionType = first.partitionType;
      if (volume.problem !== undefined) {
        info.problem = volume.problem;
        volumes.push({ info, filesystem: null, failure: new Qcow2Error('FILESYSTEM_UNSUPPORTED', volume.problem) });
        continue;
      }
      volumes.push(await logicalVolume(guest, info, readers));
    }
  }
  return volumes;
}

/** One readable logical volume: its filesystem probed and opened through its pieces. */
async function logicalVolume(guest: CachedGuestBytes, info: GuestVolumeInfo, readers: readonly FilesystemReader[]): Promise<FoundVolume> {
  const segments = info.segments ?? [];
  if (segments.length === 0) return { info, filesystem: null, failure: null };
  const bytes = segmentedVolumeBytes(guest, segments);
  let reader: FilesystemReader | null;
  try {
    reader = await probe(bytes, readers);
  } catch (error) {
    if (!(error instanceof Qcow2Error) || !FILESYSTEM_ERRORS.has(error.code)) throw error;
    info.problem = error.message;
    return { info, filesystem: null, failure: error };
  }
  return reader === null ? unread(info, bytes) : openVolume(bytes, reader, openContext(guest, segments), { ...info, filesystem: reader.kind });
}

/** A volume no reader recognised, with what it holds where its type or signature says (swap, encrypted…). */
async function unread(info: GuestVolumeInfo, bytes: VolumeBytes, partitionType?: string): Promise<FoundVolume> {
  const holds = await volumeContent(bytes, partitionType);
  if (holds !== null) info.holds = holds;
  return { info, filesystem: null, failure: null };
}

async function probe(bytes: VolumeBytes, readers: readonly FilesystemReader[]): Promise<FilesystemReader | null> {
  for (const reader of readers) {
    if (await reader.probe(bytes)) return reader;
  }
  return null;
}

/** Opens the filesystem `reader` recognised; a filesystem error becomes the volume's problem, anything else (a locked or damaged image) is thrown. */
async function openVolume(bytes: VolumeBytes, reader: FilesystemReader, context: VolumeOpenContext, info: GuestVolumeInfo & { filesystem: GuestFilesystemKind }): Promise<FoundVolume> {
  try {
    const filesystem = await reader.open(bytes, context);
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

/** A volume of `guest` made of `pieces` (guest offsets): named by the guest's identity and where it lies. */
function openContext(guest: CachedGuestBytes, pieces: readonly { offset: number; length: number }[]): VolumeOpenContext {
  return { identity: guest.identity === null ? null : `${pieces.map((piece) => `${piece.offset}+${piece.length}`).join(',')} in ${guest.identity}` };
}
