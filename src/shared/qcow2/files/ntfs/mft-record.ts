/**
 * One MFT record (after its fixups) and the attribute headers in it: resident values as bytes,
 * non-resident ones as sizes plus decoded data runs. Every length is checked against the record.
 */
import { corrupt, LeBytes } from './bytes.ts';
import { decodeRunlist, type DataRun } from './runlist.ts';

export const ATTRIBUTE = {
  standardInformation: 0x10,
  attributeList: 0x20,
  fileName: 0x30,
  volumeName: 0x60,
  volumeInformation: 0x70,
  data: 0x80,
  indexRoot: 0x90,
  indexAllocation: 0xa0,
  reparsePoint: 0xc0,
} as const;

const END_OF_ATTRIBUTES = 0xffffffff;
const RECORD_IN_USE = 0x0001;
const RECORD_IS_DIRECTORY = 0x0002;
export const ATTRIBUTE_COMPRESSED = 0x0001;
export const ATTRIBUTE_ENCRYPTED = 0x4000;

interface AttributeCommon {
  type: number;
  name: string;
  flags: number;
  id: number;
  /** The MFT record the attribute was found in. */
  recordNumber: number;
}

export interface ResidentAttribute extends AttributeCommon {
  resident: true;
  value: Uint8Array;
}

export interface NonResidentAttribute extends AttributeCommon {
  resident: false;
  firstVcn: number;
  lastVcn: number;
  runs: DataRun[];
  /** log2 of the compression unit in clusters (0 when not compressed). */
  compressionUnit: number;
  /** Sizes are only meaningful in the extent starting at VCN 0. */
  allocatedSize: number;
  dataSize: number;
  initializedSize: number;
}

export type Attribute = ResidentAttribute | NonResidentAttribute;

export interface MftRecord {
  recordNumber: number;
  sequenceNumber: number;
  inUse: boolean;
  isDirectory: boolean;
  /** The base record of an extension record, or null for a base record. */
  baseRecordNumber: number | null;
  attributes: Attribute[];
}

/** The low 48 bits of a file reference: the MFT record number. */
export function referenceRecord(reference: bigint): number {
  return Number(reference & 0xffff_ffff_ffffn);
}

export function referenceSequence(reference: bigint): number {
  return Number(reference >> 48n);
}

export function parseMftRecord(record: Uint8Array, recordNumber: number, clusterSize: number, clusterCount: number): MftRecord {
  const what = `MFT record ${recordNumber}`;
  const bytes = new LeBytes(record, what);
  const usaOffset = bytes.u16(4);
  const flags = bytes.u16(0x16);
  const firstAttribute = bytes.u16(0x14);
  const bytesInUse = bytes.u32(0x18);
  if (bytesInUse > record.length || bytesInUse < 0x30) throw corrupt(`${what} claims ${bytesInUse} bytes in use of ${record.length}`);
  if (firstAttribute < 0x18 || firstAttribute % 8 !== 0 || firstAttribute >= bytesInUse) throw corrupt(`${what}: first attribute at ${firstAttribute}`);
  // NTFS 3.1 records name their own number; an older layout has the update sequence array there.
  if (usaOffset >= 0x30 && bytes.u32(0x2c) !== recordNumber % 2 ** 32) throw corrupt(`${what} names itself record ${bytes.u32(0x2c)}`);
  const baseReference = bytes.u64Big(0x20);
  const baseRecordNumber = referenceRecord(baseReference);
  const attributes: Attribute[] = [];
  const inUse = bytes.slice(0, bytesInUse);
  let position = firstAttribute;
  for (;;) {
    const type = bytes.u32(position);
    if (type === END_OF_ATTRIBUTES) break;
    const length = bytes.u32(position + 4);
    if (length < 0x18 || length % 8 !== 0 || position + length > bytesInUse) {
      throw corrupt(`${what}: attribute 0x${type.toString(16)} at ${position} has length ${length}, past the record's ${bytesInUse} bytes in use`);
    }
    attributes.push(parseAttribute(new LeBytes(inUse.subarray(position, position + length), `${what} attribute 0x${type.toString(16)}`), recordNumber, clusterSize, clusterCount));
    position += length;
  }
  return {
    recordNumber,
    sequenceNumber: bytes.u16(0x10),
    inUse: (flags & RECORD_IN_USE) !== 0,
    isDirectory: (flags & RECORD_IS_DIRECTORY) !== 0,
    baseRecordNumber: baseRecordNumber === 0 ? null : baseRecordNumber,
    attributes,
  };
}

function parseAttribute(bytes: LeBytes, recordNumber: number, clusterSize: number, clusterCount: number): Attribute {
  const type = bytes.u32(0);
  const nonResident = bytes.u8(8);
  const nameLength = bytes.u8(9);
  const nameOffset = bytes.u16(0x0a);
  const common: AttributeCommon = {
    type,
    name: nameLength === 0 ? '' : bytes.utf16(nameOffset, nameLength),
    flags: bytes.u16(0x0c),
    id: bytes.u16(0x0e),
    recordNumber,
  };
  if (nonResident === 0) {
    const valueLength = bytes.u32(0x10);
    const valueOffset = bytes.u16(0x14);
    return { ...common, resident: true, value: bytes.slice(valueOffset, valueLength) };
  }
  if (nonResident !== 1) throw corrupt(`attribute 0x${type.toString(16)} in MFT record ${recordNumber}: non-resident flag ${nonResident}`);
  const what = `attribute 0x${type.toString(16)} in MFT record ${recordNumber}`;
  const firstVcn = bytes.u64(0x10, 'its first VCN');
  const lastVcnRaw = bytes.u64Big(0x18);
  // An empty attribute stores last VCN -1.
  const lastVcn = lastVcnRaw === 0xffff_ffff_ffff_ffffn ? -1 : bytes.u64(0x18, 'its last VCN');
  const maxClusters = Math.floor(Number.MAX_SAFE_INTEGER / clusterSize);
  if (lastVcn < firstVcn - 1 || lastVcn >= maxClusters) throw corrupt(`${what}: VCNs ${firstVcn}..${lastVcn}`);
  const runsOffset = bytes.u16(0x20);
  const compressionUnit = bytes.u16(0x22);
  const allocatedSize = bytes.u64(0x28, 'its allocated size');
  const dataSize = bytes.u64(0x30, 'its data size');
  const initializedSize = bytes.u64(0x38, 'its initialized size');
  if (firstVcn === 0) {
    if (dataSize > allocatedSize || initializedSize > dataSize) throw corrupt(`${what}: sizes ${dataSize} (initialized ${initializedSize}) exceed the ${allocatedSize} bytes allocated`);
  }
  if (runsOffset < 0x40 || runsOffset > bytes.length) throw corrupt(`${what}: data runs at ${runsOffset}`);
  const runs = decodeRunlist(bytes.slice(runsOffset, bytes.length - runsOffset), firstVcn, lastVcn, clusterCount, what);
  return { ...common, resident: false, firstVcn, lastVcn, runs, compressionUnit, allocatedSize, dataSize, initializedSize };
}

/** The file attributes of $STANDARD_INFORMATION and $FILE_NAME that matter to the reader. */
export const FILE_ATTRIBUTE = {
  system: 0x0004,
  reparsePoint: 0x0400,
  compressed: 0x0800,
  encrypted: 0x4000,
} as const;
