/**
 * The transactions an XFS log's records hold, put back together: each operation (a 12-byte header:
 * transaction id, length, client, flags) carries one region of a transaction or a part of one
 * (flags say it continues in the next operation, or continues the last). A transaction starts
 * with an empty start operation, then its header (its signature "TRAN"), then its items, each a
 * run of regions whose first (the item's format) gives its type and how many regions it has; a
 * commit operation closes it. Only committed transactions are replayed: one the log ends inside
 * never happened.
 *
 * The item formats are written in the byte order of the machine that wrote the log (the records'
 * h_fmt says which); the operation headers are big-endian.
 */
import { corrupt } from './xfs-bytes.ts';
import type { LogRecord, Lsn } from './xfs-log-records.ts';

const OP_HEADER_BYTES = 12;
const CLIENT_TRANSACTION = 0x69;
const CLIENT_LOG = 0xaa;
const START = 0x01;
const COMMIT = 0x02;
const CONTINUE = 0x04;
const WAS_CONTINUED = 0x08;
const END = 0x10;
const UNMOUNT = 0x20;
const TRANSACTION_MAGIC = 0x5452414e; // "TRAN", in the writer's byte order
const TRANSACTION_HEADER_BYTES = 16;
/** XLOG_MAX_REGIONS_IN_ITEM. */
const MAX_REGIONS = (128 * 128) / 2 + 1;
/** The largest region a kernel logs is a 64 KiB buffer's; a damaged log may claim any. */
const MAX_REGION_BYTES = 1024 * 1024;

export interface LogItem {
  /** The item's format structure (its type at 0, its region count at 2), then its other regions. */
  regions: Uint8Array[];
}

export interface LogTransaction {
  /** The sequence number of the record that started it. */
  lsn: Lsn;
  items: LogItem[];
}

/** An item being put together: each region as the pieces its operations carried (joined once, at the commit). */
interface OpenItem {
  regions: { pieces: Uint8Array[]; bytes: number }[];
  total: number;
}

interface OpenTransaction {
  lsn: Lsn;
  header: Uint8Array | null;
  items: OpenItem[];
}

/** The committed transactions of `records`, in commit order. FILESYSTEM_CORRUPT where operations contradict themselves. */
export function committedTransactions(records: readonly LogRecord[], littleEndian: boolean): LogTransaction[] {
  const open = new Map<number, OpenTransaction>();
  const committed: LogTransaction[] = [];
  for (const record of records) {
    const { data } = record;
    let at = 0;
    for (let operation = 0; operation < record.operations && at < data.length; operation++) {
      if (at + OP_HEADER_BYTES > data.length) throw corrupt(`its log record at ${record.lsn.block} ends inside an operation header`);
      const view = new DataView(data.buffer, data.byteOffset + at, OP_HEADER_BYTES);
      const tid = view.getUint32(0);
      const length = view.getUint32(4);
      const client = view.getUint8(8);
      const flags = view.getUint8(9);
      at += OP_HEADER_BYTES;
      if (client !== CLIENT_TRANSACTION && client !== CLIENT_LOG) throw corrupt(`its log record at ${record.lsn.block} holds an operation of client 0x${client.toString(16)}`);
      if (at + length > data.length) throw corrupt(`its log record at ${record.lsn.block} holds an operation of ${length} bytes past its end`);
      const payload = data.subarray(at, at + length);
      at += length;
      const transaction = open.get(tid);
      if (transaction === undefined) {
        // Operations of a transaction that started before the tail are skipped, as the kernel skips them.
        if ((flags & START) !== 0) open.set(tid, { lsn: record.lsn, header: null, items: [] });
        continue;
      }
      let kind = flags & ~END;
      if ((kind & WAS_CONTINUED) !== 0) kind &= ~CONTINUE;
      if (kind === 0 || kind === CONTINUE) addRegion(transaction, payload, littleEndian);
      else if (kind === WAS_CONTINUED) continueRegion(transaction, payload);
      else if (kind === COMMIT) {
        open.delete(tid);
        committed.push({ lsn: transaction.lsn, items: transaction.items.filter((item) => item.regions.length > 0).map((item) => ({ regions: item.regions.map((region) => joined(region.pieces)) })) });
      } else if (kind === UNMOUNT) open.delete(tid);
      else throw corrupt(`its log holds an operation with flags 0x${flags.toString(16)} inside a transaction`);
    }
  }
  // In the order of their commits, as the kernel replays them.
  return committed;
}

function addRegion(transaction: OpenTransaction, payload: Uint8Array, littleEndian: boolean): void {
  if (payload.length === 0) return;
  if (transaction.header === null) {
    if (payload.length < 4 || readUint32(payload, 0, littleEndian) !== TRANSACTION_MAGIC) throw corrupt('a logged transaction has no transaction header');
    if (payload.length > TRANSACTION_HEADER_BYTES) throw corrupt(`a logged transaction header of ${payload.length} bytes`);
    transaction.header = payload;
    transaction.items.push({ regions: [], total: 0 });
    return;
  }
  let item = transaction.items.at(-1) as OpenItem;
  if (item.total !== 0 && item.total === item.regions.length) {
    item = { regions: [], total: 0 };
    transaction.items.push(item);
  }
  if (item.total === 0) {
    if (payload.length < 4) throw corrupt('a logged item format is split before its region count');
    const total = readUint16(payload, 2, littleEndian);
    if (total === 0 || total > MAX_REGIONS) throw corrupt(`a logged item of ${total} regions`);
    item.total = total;
  }
  if (item.regions.length >= item.total) throw corrupt(`a logged item has more than its ${item.total} regions`);
  item.regions.push({ pieces: [payload], bytes: payload.length });
}

/** The rest of the region the last operation began. */
function continueRegion(transaction: OpenTransaction, payload: Uint8Array): void {
  const item = transaction.items.at(-1);
  if (item === undefined) throw corrupt('a logged region continues where none began');
  const last = item.regions.length - 1;
  // The rest of the transaction header: only its signature, already checked, is needed.
  if (last < 0) {
    if (transaction.items.length === 1) return;
    throw corrupt('a logged region continues where none began');
  }
  const region = item.regions[last] as { pieces: Uint8Array[]; bytes: number };
  region.bytes += payload.length;
  if (region.bytes > MAX_REGION_BYTES) throw corrupt(`a logged region of ${region.bytes} bytes or more`);
  region.pieces.push(payload);
}

function joined(pieces: Uint8Array[]): Uint8Array {
  if (pieces.length === 1) return pieces[0] as Uint8Array;
  const bytes = new Uint8Array(pieces.reduce((total, piece) => total + piece.length, 0));
  let at = 0;
  for (const piece of pieces) {
    bytes.set(piece, at);
    at += piece.length;
  }
  return bytes;
}

export function readUint16(bytes: Uint8Array, at: number, littleEndian: boolean): number {
  const [first, second] = [bytes[at] as number, bytes[at + 1] as number];
  return littleEndian ? first | (second << 8) : (first << 8) | second;
}

export function readUint32(bytes: Uint8Array, at: number, littleEndian: boolean): number {
  const low = readUint16(bytes, littleEndian ? at : at + 2, littleEndian);
  const high = readUint16(bytes, littleEndian ? at + 2 : at, littleEndian);
  return high * 0x10000 + low;
}
