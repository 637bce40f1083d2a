/**
 * An NTFS volume's records: the boot sector's geometry, the MFT as a stream of its own $DATA, MFT
 * records read with their fixups (a small cache of parsed ones), and a file's attributes gathered
 * from its base record and the extension records its $ATTRIBUTE_LIST names.
 */
import type { VolumeBytes } from '../filesystem.ts';
import { AttributeStream } from './attribute-stream.ts';
import { parseAttributeList } from './attribute-values.ts';
import { BOOT_SECTOR_SIZE, parseBootSector, type NtfsGeometry } from './boot-sector.ts';
import { corrupt } from './bytes.ts';
import { applyFixups } from './fixups.ts';
import { ATTRIBUTE, parseMftRecord, type Attribute, type MftRecord } from './mft-record.ts';

export const MFT_RECORD = { mft: 0, volume: 3, root: 5, upcase: 10 } as const;
/** Records below this number are the volume's own metafiles ($MFT … $Extend and reserved ones). */
export const FIRST_USER_RECORD = 16;
const RECORD_CACHE_SIZE = 1024;
/** An attribute list far larger than any real file's (each entry names one attribute extent). */
const MAX_ATTRIBUTE_LIST_SIZE = 4 * 1024 * 1024;

export interface NtfsFile {
  record: MftRecord;
  /** Every attribute of the file: its base record's and its extension records'. */
  attributes: Attribute[];
}

export class NtfsVolume {
  private mft!: AttributeStream;
  private recordCount = 0;
  private readonly cache = new Map<number, MftRecord>();

  readonly bytes: VolumeBytes;
  readonly geometry: NtfsGeometry;

  private constructor(bytes: VolumeBytes, geometry: NtfsGeometry) {
    this.bytes = bytes;
    this.geometry = geometry;
  }

  static async open(bytes: VolumeBytes): Promise<NtfsVolume> {
    if (bytes.length < BOOT_SECTOR_SIZE) throw corrupt('the volume is smaller than a boot sector');
    const sector = new Uint8Array(BOOT_SECTOR_SIZE);
    await bytes.read(sector, 0);
    const geometry = parseBootSector(sector, bytes.length);
    const volume = new NtfsVolume(bytes, geometry);
    await volume.loadMft();
    return volume;
  }

  /** The MFT's $DATA, found first in record 0 read where the boot sector points, then completed through its attribute list. */
  private async loadMft(): Promise<void> {
    const { mftRecordSize, mftOffset, clusterSize } = this.geometry;
    if (mftOffset + mftRecordSize > this.bytes.length) throw corrupt('the MFT starts past the volume end');
    const raw = new Uint8Array(mftRecordSize);
    await this.bytes.read(raw, mftOffset);
    const record = this.parse(raw, MFT_RECORD.mft);
    const own = record.attributes.filter((attribute) => attribute.type === ATTRIBUTE.data && attribute.name === '');
    const first = own.filter((attribute) => !attribute.resident && attribute.firstVcn === 0);
    if (first.length !== 1) throw corrupt('$MFT has no non-resident $DATA starting at VCN 0');
    this.useMft(AttributeStream.fromExtents(this.bytes, clusterSize, first, '$MFT $DATA'));
    const file = await this.fileFromRecord(record);
    const extents = file.attributes.filter((attribute) => attribute.type === ATTRIBUTE.data && attribute.name === '');
    this.useMft(AttributeStream.fromExtents(this.bytes, clusterSize, extents, '$MFT $DATA'));
  }

  private useMft(stream: AttributeStream): void {
    if (stream.unsupported !== null) throw corrupt(`$MFT is ${stream.unsupported}`);
    this.mft = stream;
    this.recordCount = Math.floor(stream.size / this.geometry.mftRecordSize);
    this.cache.clear();
  }

  private parse(raw: Uint8Array, recordNumber: number): MftRecord {
    applyFixups(raw, 'FILE', `MFT record ${recordNumber}`);
    return parseMftRecord(raw, recordNumber, this.geometry.clusterSize, this.geometry.clusterCount);
  }

  async record(recordNumber: number): Promise<MftRecord> {
    const cached = this.cache.get(recordNumber);
    if (cached !== undefined) return cached;
    if (!Number.isSafeInteger(recordNumber) || recordNumber < 0 || recordNumber >= this.recordCount) {
      throw corrupt(`a reference to MFT record ${recordNumber}, past the MFT's ${this.recordCount} records`);
    }
    const raw = new Uint8Array(this.geometry.mftRecordSize);
    await this.mft.read(raw, recordNumber * this.geometry.mftRecordSize, '$MFT');
    const record = this.parse(raw, recordNumber);
    if (this.cache.size >= RECORD_CACHE_SIZE) this.cache.delete(this.cache.keys().next().value as number);
    this.cache.set(recordNumber, record);
    return record;
  }

  /** A file by its base record number: in use, not an extension record, with every attribute. */
  async file(recordNumber: number): Promise<NtfsFile> {
    const record = await this.record(recordNumber);
    if (!record.inUse) throw corrupt(`MFT record ${recordNumber} is referenced but not in use`);
    if (record.baseRecordNumber !== null) throw corrupt(`MFT record ${recordNumber} is referenced as a file but extends record ${record.baseRecordNumber}`);
    return this.fileFromRecord(record);
  }

  private async fileFromRecord(record: MftRecord): Promise<NtfsFile> {
    const lists = record.attributes.filter((attribute) => attribute.type === ATTRIBUTE.attributeList);
    if (lists.length === 0) return { record, attributes: record.attributes };
    const what = `MFT record ${record.recordNumber}`;
    const list = this.stream(lists, `${what} $ATTRIBUTE_LIST`);
    if (list.size > MAX_ATTRIBUTE_LIST_SIZE) throw corrupt(`${what}: an attribute list of ${list.size} bytes`);
    const value = new Uint8Array(list.size);
    await list.read(value, 0, `${what} $ATTRIBUTE_LIST`);
    const attributes = [...record.attributes];
    const extensionNumbers = new Set(parseAttributeList(value, what).map((entry) => entry.recordNumber));
    extensionNumbers.delete(record.recordNumber);
    for (const extensionNumber of extensionNumbers) {
      const extension = await this.record(extensionNumber);
      if (!extension.inUse || extension.baseRecordNumber !== record.recordNumber) {
        throw corrupt(`${what}: its attribute list names record ${extensionNumber}, which does not extend it`);
      }
      attributes.push(...extension.attributes.filter((attribute) => attribute.type !== ATTRIBUTE.attributeList));
    }
    return { record, attributes };
  }

  stream(extents: readonly Attribute[], what: string): AttributeStream {
    return AttributeStream.fromExtents(this.bytes, this.geometry.clusterSize, extents, what);
  }

  /** The named attribute of a file as a stream, or null when the file has none. */
  attributeStream(file: NtfsFile, type: number, name: string): AttributeStream | null {
    const extents = file.attributes.filter((attribute) => attribute.type === type && attribute.name === name);
    if (extents.length === 0) return null;
    return this.stream(extents, `MFT record ${file.record.recordNumber} attribute 0x${type.toString(16)}${name === '' ? '' : ` "${name}"`}`);
  }
}
