/**
 * Whether an XFS filesystem was shut down cleanly: its log's last record is an unmount record.
 * Otherwise the guest had it mounted when the state was saved (a snapshot of a running VM), and
 * metadata changes may still wait in the log: Cowbell does not replay an XFS log, so it says so.
 *
 * The log is circular, in 512-byte basic blocks, each starting with the cycle (pass) it was
 * written in; the head (where the next record goes) is where the cycle drops. The record before it
 * is the last one written: clean when it holds one operation flagged as an unmount.
 */
import type { VolumeBytes } from '../filesystem.ts';
import { uint32 } from './xfs-bytes.ts';
import type { XfsSuperblock } from './xfs-superblock.ts';

const BASIC_BLOCK = 512;
const RECORD_MAGIC = 0xfeedbabe;
/** xlog_op_header's flags byte: XLOG_UNMOUNT_TRANS. */
const UNMOUNT_FLAG = 0x20;
/** How far back from the head the last record header is looked for (a record is at most 256 KiB, its header up to 8 blocks). */
const SEARCH_BACK_BYTES = 512 * 1024;

const IN_USE =
  'XFS had this volume mounted when the state was saved (its log was not closed): changes the guest made last may still wait in the log, which Cowbell does not replay, so they may be missing';

/** A caution for a filesystem whose log is not known to be clean, or null. */
export async function xfsLogCaution(volume: VolumeBytes, superblock: XfsSuperblock): Promise<string | null> {
  if (superblock.log === null) return 'The XFS log is on another device, which Cowbell cannot read: whether the guest shut the volume down cleanly is not known';
  if (superblock.logIncompatible !== 0) return IN_USE;
  const start = superblock.log.firstBlock * superblock.blockBytes;
  const blocks = (superblock.log.blocks * superblock.blockBytes) / BASIC_BLOCK;
  const log = new LogReader(volume, start);
  const head = await findHead(log, blocks);
  return (await lastRecordIsUnmount(log, head, blocks)) ? null : IN_USE;
}

class LogReader {
  private readonly volume: VolumeBytes;
  private readonly start: number;
  private readonly one = new Uint8Array(BASIC_BLOCK);

  constructor(volume: VolumeBytes, start: number) {
    this.volume = volume;
    this.start = start;
  }

  async block(index: number): Promise<Uint8Array> {
    await this.volume.read(this.one, this.start + index * BASIC_BLOCK);
    return this.one;
  }

  async blocks(first: number, count: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(count * BASIC_BLOCK);
    await this.volume.read(bytes, this.start + first * BASIC_BLOCK);
    return bytes;
  }

  /** The cycle a basic block was written in: a record header keeps it after its signature, any other block in its first word. */
  async cycle(index: number): Promise<number> {
    const block = await this.block(index);
    return uint32(block, 0) === RECORD_MAGIC ? uint32(block, 4) : uint32(block, 0);
  }
}

/** The first basic block written in an earlier cycle than block 0 (binary search: cycles fall once), or `blocks` when none is. */
async function findHead(log: LogReader, blocks: number): Promise<number> {
  const firstCycle = await log.cycle(0);
  if ((await log.cycle(blocks - 1)) === firstCycle) return blocks;
  let low = 1;
  let high = blocks - 1;
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    if ((await log.cycle(middle)) === firstCycle) low = middle + 1;
    else high = middle;
  }
  return low;
}

/** Whether the last record header before `head` (wrapping to the log's end) is a lone unmount operation. */
async function lastRecordIsUnmount(log: LogReader, head: number, blocks: number): Promise<boolean> {
  const searched = Math.min(blocks, SEARCH_BACK_BYTES / BASIC_BLOCK);
  const chunk = 256;
  for (let back = 0; back < searched; back += chunk) {
    const count = Math.min(chunk, searched - back);
    // Blocks head-back-count .. head-back-1, modulo the log's length, read as one or two pieces.
    const first = (((head - back - count) % blocks) + blocks) % blocks;
    const bytes = first + count <= blocks ? await log.blocks(first, count) : concat(await log.blocks(first, blocks - first), await log.blocks(0, first + count - blocks));
    for (let index = count - 1; index >= 0; index--) {
      if (uint32(bytes, index * BASIC_BLOCK) !== RECORD_MAGIC) continue;
      const header = bytes.subarray(index * BASIC_BLOCK, (index + 1) * BASIC_BLOCK);
      const operations = uint32(header, 40);
      // Version 2 logs with records over 32 KiB carry extra header blocks (a cycle table each) before the data.
      const version = uint32(header, 8);
      const recordSize = version === 2 ? uint32(header, 320) : 0;
      const headerBlocks = version === 2 && recordSize > 32768 ? Math.ceil(recordSize / 32768) : 1;
      const dataBlock = ((first + index + headerBlocks) % blocks + blocks) % blocks;
      const data = await log.block(dataBlock);
      // The op header: tid (its first word is overwritten by the cycle on disk), length, client id, then flags.
      return operations === 1 && ((data[9] as number) & UNMOUNT_FLAG) !== 0;
    }
  }
  return false;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}
