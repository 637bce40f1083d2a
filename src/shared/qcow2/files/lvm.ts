/**
 * LVM2 physical volumes, read-only: the volume group's logical volumes that lie on this physical
 * volume, each as the byte ranges of the PV it occupies (an Ubuntu Server install puts its root
 * filesystem in one: ubuntu-vg/ubuntu-lv).
 *
 * On disk: a label ("LABELONE", type "LVM2 001") in one of the first four sectors points at the
 * PV header (its UUID, size, data and metadata areas); a metadata area starts with a header
 * (magic " LVM2 x[5A%r0N*>") whose first location names the current text metadata inside the area,
 * a ring that may wrap past its end to just after the header. The text (lvm-metadata-text.ts)
 * gives the extent size, the PVs (by UUID, with where their extents start) and the LVs, each made
 * of segments of consecutive extents. The label, the area header and the text each carry LVM's
 * CRC-32 (its own starting value, no final inversion): one that does not match is corrupt, as LVM
 * refuses it. Linear segments ("striped" with one stripe) on this PV are read; an LV with another kind (thin, RAID, mirror, cache, snapshot) or parts on another PV is
 * listed with the reason it is not read. Hostile bytes give FILESYSTEM_CORRUPT.
 */
import { Qcow2Error } from '../errors.ts';
import type { ByteRange, VolumeBytes } from './filesystem.ts';
import { parseLvmMetadata, type LvmSection, type LvmValue } from './lvm-metadata-text.ts';

const SECTOR = 512;
const LABEL_SECTORS = 4;
const MDA_HEADER_BYTES = 512;
const MDA_MAGIC = ' LVM2 x[5A%r0N*>';
/** Metadata text larger than this is not LVM's (its default area is 1 MiB). */
const MAX_METADATA_BYTES = 16 * 1024 * 1024;
const MAX_AREAS = 16;

export interface LogicalVolume {
  group: string;
  name: string;
  /** The name device-mapper gives it (/dev/mapper/…): the group's and its own, "-" doubled within each. */
  mapperName: string;
  /** Where its bytes lie in the PV, in order; empty when it is not read (problem says why). */
  ranges: ByteRange[];
  size: number;
  problem?: string;
}

function corrupt(message: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `LVM: ${message}`);
}

const LVM_CRC_START = 0xf597a6cf;

/** LVM's checksum: CRC-32 (IEEE) from LVM_CRC_START, without the final inversion (node:zlib's crc32 inverts on both ends). */
function lvmCrc(bytes: Uint8Array): number {
  return ~process.getBuiltinModule('node:zlib').crc32(bytes, ~LVM_CRC_START >>> 0) >>> 0;
}

function checkCrc(stored: number, bytes: Uint8Array, what: string): void {
  if (lvmCrc(bytes) !== stored) throw corrupt(`${what} fails its checksum`);
}

async function readAt(bytes: VolumeBytes, offset: number, length: number): Promise<DataView> {
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > bytes.length) throw corrupt(`a read of ${length} bytes at ${offset} lies outside the ${bytes.length}-byte volume`);
  const buffer = new Uint8Array(length);
  await bytes.read(buffer, offset);
  return new DataView(buffer.buffer);
}

const ascii = (view: DataView, at: number, length: number): string => String.fromCharCode(...new Uint8Array(view.buffer, view.byteOffset + at, length));

function u64(view: DataView, at: number, what: string): number {
  const value = view.getBigUint64(at, true);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`${what} is out of range`);
  return Number(value);
}

/** The sector holding the label, or -1. */
async function labelSector(bytes: VolumeBytes): Promise<number> {
  if (bytes.length < LABEL_SECTORS * SECTOR) return -1;
  const head = await readAt(bytes, 0, LABEL_SECTORS * SECTOR);
  for (let sector = 0; sector < LABEL_SECTORS; sector++) {
    const at = sector * SECTOR;
    if (ascii(head, at, 8) === 'LABELONE' && ascii(head, at + 24, 8) === 'LVM2 001') return sector;
  }
  return -1;
}

export async function isLvmPhysicalVolume(bytes: VolumeBytes): Promise<boolean> {
  return (await labelSector(bytes)) >= 0;
}

/** A physical volume: its UUID, and the metadata of its group (parsed) with the group's id, name and sequence number. */
export interface PhysicalVolume {
  uuid: string;
  metadata: LvmSection;
  group: { id: string; name: string; seqno: number };
}

/** Where a PV of the group lies (by its UUID): an offset and length in the caller's terms, or null when it is not on this disk. */
export type PhysicalVolumeLocator = (uuid: string) => { offset: number; length: number } | null;

/** The logical volumes of the group this PV belongs to, as far as they lie on it (ranges in the PV). */
export async function readLogicalVolumes(bytes: VolumeBytes): Promise<LogicalVolume[]> {
  const pv = await readPhysicalVolume(bytes);
  return logicalVolumesOf(pv.metadata, (uuid) => (uuid === pv.uuid ? { offset: 0, length: bytes.length } : null));
}

/** The PV's label and the current metadata of its group. */
export async function readPhysicalVolume(bytes: VolumeBytes): Promise<PhysicalVolume> {
  const { uuid, metadataAreas } = await readPhysicalVolumeLabel(bytes);
  if (metadataAreas.length === 0) throw corrupt('this physical volume keeps no copy of the metadata (only another PV of its group has one), which Cowbell does not read');
  // A PV may keep a second copy (at its end): the first that reads, as LVM takes any good copy.
  let text: string | null = null;
  let firstError: unknown = null;
  for (const area of metadataAreas) {
    try {
      text = await currentMetadata(bytes, area);
      break;
    } catch (error) {
      firstError ??= error;
    }
  }
  if (text === null) throw firstError instanceof Error ? firstError : corrupt('no metadata area reads');
  const metadata = parseLvmMetadata(text);
  const groups = [...metadata.sections.entries()];
  const [name, group] = groups[0] ?? [];
  if (name === undefined || group === undefined || groups.length !== 1) throw corrupt(`${groups.length} volume groups in one metadata text`);
  const id = group.values.get('id');
  return { uuid, metadata, group: { id: typeof id === 'string' ? id : name, name, seqno: asNumber(group.values.get('seqno') ?? 0, 'seqno') } };
}

/** The UUIDs (without dashes) of the physical volumes a group's metadata lists. */
export function physicalVolumeUuids(metadata: LvmSection): string[] {
  const group = [...metadata.sections.values()][0];
  return [...(group?.sections.get('physical_volumes')?.sections.values() ?? [])].map((pv) => pv.values.get('id')).filter((id): id is string => typeof id === 'string').map((id) => id.replaceAll('-', ''));
}

/** The PV's UUID and metadata areas, from its label (checked against its checksum). */
export async function readPhysicalVolumeLabel(bytes: VolumeBytes): Promise<{ uuid: string; metadataAreas: ByteRange[] }> {
  const sector = await labelSector(bytes);
  if (sector < 0) throw corrupt('no physical volume label');
  const label = await readAt(bytes, sector * SECTOR, SECTOR);
  checkCrc(label.getUint32(16, true), new Uint8Array(label.buffer, 20, SECTOR - 20), 'the physical volume label');
  const headerAt = label.getUint32(20, true);
  if (headerAt < 32 || headerAt + 40 > SECTOR) throw corrupt(`the PV header lies at ${headerAt} of its label sector`);
  const uuid = ascii(label, headerAt, 32);
  // Data areas, then metadata areas: (offset, size) pairs, each list ended by a zero pair.
  let at = headerAt + 40;
  const lists: ByteRange[][] = [[], []];
  for (const list of lists) {
    for (;;) {
      if (at + 16 > SECTOR || list.length > MAX_AREAS) throw corrupt('the PV header\'s area lists run past its sector');
      const offset = u64(label, at, 'an area offset');
      const length = u64(label, at + 8, 'an area size');
      at += 16;
      if (offset === 0 && length === 0) break;
      list.push({ offset, length });
    }
  }
  return { uuid, metadataAreas: lists[1] ?? [] };
}

/** The current metadata text of one metadata area. */
async function currentMetadata(bytes: VolumeBytes, area: ByteRange): Promise<string> {
  const header = await readAt(bytes, area.offset, MDA_HEADER_BYTES);
  if (ascii(header, 4, 16) !== MDA_MAGIC) throw corrupt(`no metadata area header at ${area.offset}`);
  checkCrc(header.getUint32(0, true), new Uint8Array(header.buffer, 4, MDA_HEADER_BYTES - 4), 'the metadata area header');
  const areaSize = u64(header, 32, 'the metadata area size');
  if (areaSize <= MDA_HEADER_BYTES || areaSize > area.length || area.offset + areaSize > bytes.length) throw corrupt(`a metadata area of ${areaSize} bytes`);
  const offset = u64(header, 40, 'the metadata location');
  const length = u64(header, 48, 'the metadata size');
  if (length === 0 || length > MAX_METADATA_BYTES || length > areaSize - MDA_HEADER_BYTES || offset < MDA_HEADER_BYTES || offset >= areaSize) {
    throw corrupt(`metadata of ${length} bytes at ${offset} of a ${areaSize}-byte area`);
  }
  // A ring: what passes the area's end continues right after its header.
  const first = Math.min(length, areaSize - offset);
  const parts = [new Uint8Array((await readAt(bytes, area.offset + offset, first)).buffer)];
  if (first < length) parts.push(new Uint8Array((await readAt(bytes, area.offset + MDA_HEADER_BYTES, length - first)).buffer));
  const text = Buffer.concat(parts);
  checkCrc(header.getUint32(56, true), text, 'the volume group metadata');
  return new TextDecoder('latin1').decode(text);
}

const asNumber = (value: LvmValue | undefined, what: string): number => {
  if (typeof value !== 'number' || value < 0) throw corrupt(`${what} is not a count`);
  return value;
};

/** "vg" + "lv" as device-mapper names them: each with its dashes doubled, joined by one. */
function mapperName(group: string, name: string): string {
  return `${group.replaceAll('-', '--')}-${name.replaceAll('-', '--')}`;
}

/**
 * The visible logical volumes the metadata describes, their ranges found through `locate` (in its
 * terms): a segment on a PV it does not find (another disk) or past that PV's end leaves the
 * volume unread, with the reason.
 */
export function logicalVolumesOf(top: LvmSection, locate: PhysicalVolumeLocator): LogicalVolume[] {
  const groups = [...top.sections.entries()];
  const [groupName, group] = groups[0] ?? [];
  if (groupName === undefined || group === undefined || groups.length !== 1) throw corrupt(`${groups.length} volume groups in one metadata text`);
  const extentBytes = asNumber(group.values.get('extent_size'), 'extent_size') * SECTOR;
  if (extentBytes === 0) throw corrupt('extent_size is 0');
  const pvs = new Map<string, { place: { offset: number; length: number } | null; start: number; extents: number }>();
  for (const [name, pv] of group.sections.get('physical_volumes')?.sections ?? []) {
    const id = pv.values.get('id');
    pvs.set(name, { place: typeof id === 'string' ? locate(id.replaceAll('-', '')) : null, start: asNumber(pv.values.get('pe_start'), `${name} pe_start`) * SECTOR, extents: asNumber(pv.values.get('pe_count'), `${name} pe_count`) });
  }
  const volumes: LogicalVolume[] = [];
  for (const [name, lv] of group.sections.get('logical_volumes')?.sections ?? []) {
    const status = lv.values.get('status');
    if (!Array.isArray(status) || !status.includes('VISIBLE')) continue;
    const volume: LogicalVolume = { group: groupName, name, mapperName: mapperName(groupName, name), ranges: [], size: 0 };
    const segments = [...lv.sections.values()].sort((a, b) => asNumber(a.values.get('start_extent'), 'start_extent') - asNumber(b.values.get('start_extent'), 'start_extent'));
    let nextExtent = 0;
    for (const segment of segments) {
      const start = asNumber(segment.values.get('start_extent'), 'start_extent');
      const count = asNumber(segment.values.get('extent_count'), 'extent_count');
      if (start !== nextExtent) throw corrupt(`${name}: a segment starts at extent ${start} where ${nextExtent} was next`);
      nextExtent = start + count;
      volume.size += count * extentBytes;
      const type = segment.values.get('type');
      const stripes = segment.values.get('stripes');
      if (type !== 'striped' || segment.values.get('stripe_count') !== 1 || !Array.isArray(stripes) || stripes.length !== 2) {
        volume.problem ??= `${name} is a ${typeof type === 'string' ? type : 'unknown'} logical volume${type === 'striped' ? ' of several stripes' : ''}; Cowbell reads linear ones`;
        continue;
      }
      const pv = pvs.get(String(stripes[0]));
      if (pv === undefined) throw corrupt(`${name} lies on ${String(stripes[0])}, which the group does not list`);
      if (pv.place === null) {
        volume.problem ??= `${name} lies partly on a physical volume of ${groupName} that is not on this disk, which Cowbell does not read`;
        continue;
      }
      const first = asNumber(stripes[1], 'a stripe\'s first extent');
      if (first + count > pv.extents) throw corrupt(`${name}: extents ${first}+${count} past the PV's ${pv.extents}`);
      if (count === 0) continue;
      if (pv.start + (first + count) * extentBytes > pv.place.length) {
        volume.problem ??= `${name} lies past the end of its physical volume (the partition is shorter than LVM says)`;
        continue;
      }
      const offset = pv.place.offset + pv.start + first * extentBytes;
      const last = volume.ranges.at(-1);
      // Segments that follow each other on the PV read as one range.
      if (last !== undefined && last.offset + last.length === offset) last.length += count * extentBytes;
      else volume.ranges.push({ offset, length: count * extentBytes });
    }
    if (volume.problem !== undefined) volume.ranges = [];
    volumes.push(volume);
  }
  return volumes;
}
