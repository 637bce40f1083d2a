/**
 * Seeded-random damage to the records an XFS log replays: their headers (length, operation count,
 * tail, cycle table) and their data (operation headers and the item formats after them, mostly;
 * anywhere else: buffer pieces, logged inodes),
 * with the record's CRC-32C written again after (now and then left to fail) so the damage reaches
 * the replay behind the check. Records are found through the reader's own modules.
 */
import { crc32c } from '../../../../src/shared/qcow2/files/crc32c.ts';
import { BASIC_BLOCK, findHead, headerBlocks, LogArea, lastRecordBefore, walkRecords } from '../../../../src/shared/qcow2/files/xfs/xfs-log-records.ts';
import { readXfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';
import { uint32 } from '../../../../src/shared/qcow2/files/xfs/xfs-bytes.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import type { SeededRandom } from '../../../helpers/seeded-random.ts';
import { fieldPatch } from '../field-damage.ts';
import type { Patch } from '../ntfs/ntfs-mutations.ts';

export interface LogRecordPlace {
  /** Byte offset of the record's first header block in the volume. */
  offset: number;
  headerBlocks: number;
  dataBytes: number;
  /** Where each operation header lies in the record's data. */
  operations: number[];
}

/** The records between the log's tail and head (those that do not wrap past the log's end). */
export async function findLogRecords(bytes: Uint8Array): Promise<LogRecordPlace[]> {
  const volume = memoryVolumeBytes(bytes);
  const superblock = await readXfsSuperblock(volume);
  if (superblock.log === null) return [];
  const start = superblock.log.firstBlock * superblock.blockBytes;
  const log = new LogArea(volume, start, (superblock.log.blocks * superblock.blockBytes) / BASIC_BLOCK);
  const head = await findHead(log);
  const last = await lastRecordBefore(log, head);
  if (last === null) return [];
  const walk = await walkRecords(log, { cycle: uint32(last.header, 24), block: uint32(last.header, 28) }, head, superblock.uuid, superblock.version === 5);
  const places: LogRecordPlace[] = [];
  for (const record of walk.records) {
    const header = bytes.subarray(start + record.lsn.block * BASIC_BLOCK, start + (record.lsn.block + 1) * BASIC_BLOCK);
    const hblocks = headerBlocks(header);
    if (record.lsn.block + hblocks + Math.ceil(record.data.length / BASIC_BLOCK) > log.blocks) continue;
    const operations: number[] = [];
    for (let at = 0, count = 0; count < record.operations && at + 12 <= record.data.length; count++) {
      operations.push(at);
      at += 12 + uint32(record.data, at + 4);
    }
    places.push({ offset: start + record.lsn.block * BASIC_BLOCK, headerBlocks: hblocks, dataBytes: record.data.length, operations });
  }
  return places;
}

/** Header fields worth damaging: version, length, tail, CRC, operation count, a cycle-table entry, format, size. */
const HEADER_FIELDS = [8, 12, 24, 28, 32, 40, 44, 48, 300, 320];

/** 1–3 field writes on one record, its CRC-32C written again after (one time in ten left stale). */
export function randomLogDamage(bytes: Uint8Array, records: readonly LogRecordPlace[], random: SeededRandom): Patch[] {
  const record = records[random.int(0, records.length)]!;
  const dataStart = record.offset + record.headerBlocks * BASIC_BLOCK;
  const patches = Array.from({ length: 1 + random.int(0, 2) }, () => {
    if (random.int(0, 5) === 0) return fieldPatch(random, record.offset, HEADER_FIELDS[random.int(0, HEADER_FIELDS.length)] ?? 12, BASIC_BLOCK, false);
    // Item contents are little-endian (the fixtures' guests), operation headers big-endian; half
    // the time an operation header or the item format after it, else anywhere.
    const operation = record.operations[random.int(0, record.operations.length)];
    const position = random.int(0, 2) === 0 && operation !== undefined ? operation + random.int(0, 40) : random.int(0, record.dataBytes);
    return fieldPatch(random, dataStart, position, record.dataBytes, random.int(0, 2) === 0);
  });
  if (random.int(0, 10) === 0) return patches;
  const length = record.headerBlocks * BASIC_BLOCK + record.dataBytes;
  const copy = bytes.slice(record.offset, record.offset + length);
  for (const patch of patches) if (patch.offset - record.offset + patch.bytes.length <= length) copy.set(patch.bytes, patch.offset - record.offset);
  const dataBytes = Math.min(uint32(copy, 12), length - record.headerBlocks * BASIC_BLOCK);
  let crc = crc32c(copy.subarray(0, 32));
  crc = crc32c(new Uint8Array(4), crc);
  crc = crc32c(copy.subarray(36, 328), crc);
  for (let index = 1; index < Math.min(record.headerBlocks, Math.ceil(dataBytes / 32768)); index++) crc = crc32c(copy.subarray(index * BASIC_BLOCK, index * BASIC_BLOCK + 260), crc);
  crc = crc32c(copy.subarray(record.headerBlocks * BASIC_BLOCK, record.headerBlocks * BASIC_BLOCK + dataBytes), crc);
  const stored = ~crc >>> 0;
  return [...patches, { offset: record.offset + 32, bytes: [stored & 0xff, (stored >>> 8) & 0xff, (stored >>> 16) & 0xff, stored >>> 24] }];
}
