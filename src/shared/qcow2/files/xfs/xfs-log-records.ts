/**
 * The records of an XFS log that recovery replays: from the tail (the oldest record whose changes
 * may not be in place yet) to the head (where the next record would go), each checked and unpacked.
 *
 * The log is circular, in 512-byte basic blocks, each starting with the cycle (pass) it was
 * written in: a record header keeps it after its signature, every other block in its first word,
 * whose own bytes the header keeps (h_cycle_data, and for records over 32 KiB the extra header
 * blocks that follow it). The head is where the cycle drops; the record before it names the tail.
 * A record that does not check (signature, cycle, place, length, CRC-32C on version 5) ends the
 * walk: what follows it was never completely written (the kernel cuts a torn head the same way).
 *
 * Facts from the XFS on-disk format (xfs_log_format.h, "XFS Algorithms & Data Structures").
 */
import type { VolumeBytes } from '../filesystem.ts';
import { crc32c } from '../crc32c.ts';
import { bytesEqual } from '../../format/zeroes.ts';
import { uint32 } from './xfs-bytes.ts';

export const BASIC_BLOCK = 512;
export const RECORD_MAGIC = 0xfeedbabe;
/** A record's cycle table covers this many bytes of its data (64 blocks): one more header block for each further 32 KiB. */
const CYCLE_SPAN = 32 * 1024;
const CYCLES_PER_HEADER = CYCLE_SPAN / BASIC_BLOCK;
/** The largest record a kernel writes (the largest log buffer). */
const MAX_RECORD_BYTES = 256 * 1024;
/** xlog_rec_header as the CRC covers it (its size on 64-bit machines), and each extra header's xlog_rec_ext_header. */
const HEADER_CRC_BYTES = 328;
const EXTRA_HEADER_CRC_BYTES = 4 + 4 * CYCLES_PER_HEADER;
/** h_fmt: the byte order of everything inside the records (XLOG_FMT_LINUX_LE, _LINUX_BE, _IRIX_BE). */
const FORMAT_LITTLE_ENDIAN = 1;
const FORMAT_BIG_ENDIAN = 2;
const FORMAT_IRIX = 3;

/** A log sequence number: the cycle and the block its record starts at, ordered as a pair. */
export interface Lsn {
  cycle: number;
  block: number;
}

export function compareLsn(a: Lsn, b: Lsn): number {
  return a.cycle !== b.cycle ? a.cycle - b.cycle : a.block - b.block;
}

export interface LogRecord {
  lsn: Lsn;
  /** Operations the record holds. */
  operations: number;
  /** Its data, every block's first word given back. */
  data: Uint8Array;
}

export interface LogWalk {
  records: LogRecord[];
  /** Whether what the log holds is written little-endian (Linux on x86, Arm and most others). */
  littleEndian: boolean;
  /** Where the walk stopped before the head at a record that did not check, or null. */
  stoppedAt: { block: number; reason: string } | null;
}

/** Reads basic blocks of the log, across its end where a read wraps. */
export class LogArea {
  readonly blocks: number;
  private readonly volume: VolumeBytes;
  private readonly start: number;
  private readonly one = new Uint8Array(BASIC_BLOCK);

  constructor(volume: VolumeBytes, startByte: number, blocks: number) {
    this.volume = volume;
    this.start = startByte;
    this.blocks = blocks;
  }

  /** `count` blocks from `first` (taken modulo the log's length), as one new array. */
  async read(first: number, count: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(count * BASIC_BLOCK);
    const from = ((first % this.blocks) + this.blocks) % this.blocks;
    const before = Math.min(count, this.blocks - from);
    await this.volume.read(bytes.subarray(0, before * BASIC_BLOCK), this.start + from * BASIC_BLOCK);
    if (before < count) await this.volume.read(bytes.subarray(before * BASIC_BLOCK), this.start);
    return bytes;
  }

  /** The cycle block `index` was written in. */
  async cycle(index: number): Promise<number> {
    await this.volume.read(this.one, this.start + index * BASIC_BLOCK);
    return uint32(this.one, 0) === RECORD_MAGIC ? uint32(this.one, 4) : uint32(this.one, 0);
  }
}

/**
 * Where the next record would go, as xlog_find_head finds it: where the cycle drops (binary
 * search; 0 when the whole log is one cycle), moved back to the first hole among the blocks just
 * before it, since log buffers in flight are written out of order and a crash (or a running guest's
 * snapshot) can leave an earlier one unwritten behind a later one.
 */
export async function findHead(log: LogArea): Promise<number> {
  const blocks = log.blocks;
  const firstCycle = await log.cycle(0);
  let head = blocks;
  if ((await log.cycle(blocks - 1)) !== firstCycle) {
    let low = 1;
    let high = blocks - 1;
    while (low < high) {
      const middle = Math.floor((low + high) / 2);
      if ((await log.cycle(middle)) === firstCycle) low = middle + 1;
      else high = middle;
    }
    head = low;
  }
  // Before the head every block is of `firstCycle`; one of the cycle before is a hole.
  const window = Math.min(blocks, HOLE_SCAN_BLOCKS);
  const hole = firstCycle - 1;
  if (head < window) {
    // The window runs on from the log's end, written one cycle earlier: a hole there is two cycles old.
    const endHole = await firstOfCycle(log, blocks - (window - head), blocks, hole - 1);
    if (endHole >= 0) return endHole;
  }
  const found = await firstOfCycle(log, Math.max(0, head - window), head, hole);
  return (found >= 0 ? found : head) % blocks;
}

/** Log buffers that can be in flight at once (8) of the largest size (256 KiB), in blocks: holes lie this close to the head. */
const HOLE_SCAN_BLOCKS = (8 * 256 * 1024) / BASIC_BLOCK;

/** The first block in [from, to) written in `cycle`, or -1. */
async function firstOfCycle(log: LogArea, from: number, to: number, cycle: number): Promise<number> {
  const chunk = 256;
  for (let first = from; first < to; first += chunk) {
    const count = Math.min(chunk, to - first);
    const bytes = await log.read(first, count);
    for (let index = 0; index < count; index++) {
      const at = index * BASIC_BLOCK;
      const blockCycle = uint32(bytes, at) === RECORD_MAGIC ? uint32(bytes, at + 4) : uint32(bytes, at);
      if (blockCycle === cycle) return first + index;
    }
  }
  return -1;
}

/** How far back from the head the last record header is looked for (a record and its headers). */
const SEARCH_BACK_BLOCKS = (MAX_RECORD_BYTES + 8 * BASIC_BLOCK) / BASIC_BLOCK + 1;

/** The block of the last record header before `head` (wrapping), with the header, or null. */
export async function lastRecordBefore(log: LogArea, head: number): Promise<{ block: number; header: Uint8Array } | null> {
  const searched = Math.min(log.blocks, SEARCH_BACK_BLOCKS);
  const chunk = 256;
  for (let back = 0; back < searched; back += chunk) {
    const count = Math.min(chunk, searched - back);
    const first = head - back - count;
    const bytes = await log.read(first, count);
    for (let index = count - 1; index >= 0; index--) {
      if (uint32(bytes, index * BASIC_BLOCK) !== RECORD_MAGIC) continue;
      return { block: (((first + index) % log.blocks) + log.blocks) % log.blocks, header: bytes.slice(index * BASIC_BLOCK, (index + 1) * BASIC_BLOCK) };
    }
  }
  return null;
}

/** Header blocks of a record: one, and for version 2 records over 32 KiB one more per further 32 KiB. */
export function headerBlocks(header: Uint8Array): number {
  const size = uint32(header, 320);
  return uint32(header, 8) === 2 && size > CYCLE_SPAN ? Math.ceil(size / CYCLE_SPAN) : 1;
}

/**
 * The records from `tail` up to `head`, checked and unpacked, in order; `uuid` is the
 * filesystem's (a record of another filesystem's log ends the walk), `crcs` whether records carry
 * a CRC-32C (version 5).
 */
export async function walkRecords(log: LogArea, tail: Lsn, head: number, uuid: Uint8Array, crcs: boolean): Promise<LogWalk> {
  const total = (((head - tail.block) % log.blocks) + log.blocks) % log.blocks;
  const records: LogRecord[] = [];
  let littleEndian: boolean | null = null;
  let cycle = tail.cycle;
  let done = 0;
  const stop = (reason: string): LogWalk => ({ records, littleEndian: littleEndian ?? true, stoppedAt: { block: (tail.block + done) % log.blocks, reason } });
  while (done < total) {
    const block = (tail.block + done) % log.blocks;
    const first = await log.read(block, 1);
    if (uint32(first, 0) !== RECORD_MAGIC) return stop('no record header where one belongs');
    if (uint32(first, 4) !== cycle) return stop(`a record of cycle ${uint32(first, 4)} where cycle ${cycle} was due`);
    const version = uint32(first, 8);
    const length = uint32(first, 12);
    if ((version !== 1 && version !== 2) || length === 0 || length > MAX_RECORD_BYTES) return stop(`a record header of version ${version}, ${length} bytes`);
    if (uint32(first, 16) !== cycle || uint32(first, 20) !== block) return stop('a record whose sequence number names another place');
    const hblocks = headerBlocks(first);
    const dataBlocks = Math.ceil(length / BASIC_BLOCK);
    if (hblocks > MAX_RECORD_BYTES / CYCLE_SPAN || done + hblocks + dataBlocks > total) return stop('a record that runs past the head');
    const format = uint32(first, 300);
    if (format !== FORMAT_LITTLE_ENDIAN && format !== FORMAT_BIG_ENDIAN && format !== FORMAT_IRIX) return stop(`a record of format ${format}`);
    if (littleEndian === null) littleEndian = format === FORMAT_LITTLE_ENDIAN;
    else if (littleEndian !== (format === FORMAT_LITTLE_ENDIAN)) return stop('records of both byte orders');
    if (!bytesEqual(first.subarray(304, 320), uuid)) return stop("a record of another filesystem's log");
    const whole = await log.read(block, hblocks + dataBlocks);
    const data = whole.subarray(hblocks * BASIC_BLOCK, hblocks * BASIC_BLOCK + length);
    if (crcs && !recordChecksumHolds(whole, hblocks, data)) return stop('a record that fails its checksum');
    unpack(whole, hblocks, data);
    records.push({ lsn: { cycle, block }, operations: uint32(first, 40), data });
    done += hblocks + dataBlocks;
    // The next record starts in the next cycle when this one ran past the log's end.
    if (block + hblocks + dataBlocks >= log.blocks) cycle++;
  }
  return { records, littleEndian: littleEndian ?? true, stoppedAt: null };
}

/** The CRC-32C over the header (its CRC field as zeros), the extra headers' cycle tables the data uses and the data, as stored (little-endian). */
function recordChecksumHolds(whole: Uint8Array, hblocks: number, data: Uint8Array): boolean {
  const stored = ((whole[32] as number) | ((whole[33] as number) << 8) | ((whole[34] as number) << 16) | ((whole[35] as number) << 24)) >>> 0;
  let crc = crc32c(whole.subarray(0, 32));
  crc = crc32c(new Uint8Array(4), crc);
  crc = crc32c(whole.subarray(36, HEADER_CRC_BYTES), crc);
  // The extra headers that hold the data's cycle tables: as many as the data needs, not the record's size allows.
  const tables = Math.min(hblocks, Math.ceil(data.length / CYCLE_SPAN));
  for (let index = 1; index < tables; index++) crc = crc32c(whole.subarray(index * BASIC_BLOCK, index * BASIC_BLOCK + EXTRA_HEADER_CRC_BYTES), crc);
  crc = crc32c(data, crc);
  return stored === (~crc >>> 0);
}

/** Gives each data block its first word back from the cycle tables (the header's, then the extra headers'). */
function unpack(whole: Uint8Array, hblocks: number, data: Uint8Array): void {
  const blocks = Math.ceil(data.length / BASIC_BLOCK);
  for (let index = 0; index < blocks; index++) {
    const table = Math.floor(index / CYCLES_PER_HEADER);
    if (table >= hblocks) break;
    const source = table === 0 ? 44 + index * 4 : table * BASIC_BLOCK + 4 + (index % CYCLES_PER_HEADER) * 4;
    const target = index * BASIC_BLOCK;
    if (target + 4 > data.length) break;
    data.set(whole.subarray(source, source + 4), target);
  }
}
