/**
 * Where replay starts and ends, on logs written here block by block: the head moves back to a hole
 * left among the last log buffers (written out of order, as a crash or a running guest's snapshot
 * leaves them), on either side of the log's end; and a torn last record moves the head back to it,
 * the tail then being the one the record before it names (the kernel's xlog_find_head and
 * xlog_verify_head), so that record's changes are replayed.
 */
import { describe, expect, it } from 'vitest';
import { crc32c } from '../../../../src/shared/qcow2/files/crc32c.ts';
import { recoverXfsLog } from '../../../../src/shared/qcow2/files/xfs/xfs-log.ts';
import { BASIC_BLOCK, findHead, LogArea, RECORD_MAGIC } from '../../../../src/shared/qcow2/files/xfs/xfs-log-records.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { testSuperblock } from './xfs-test-superblock.ts';

/** A log of `blocks` basic blocks, each stamped with the cycle `cycleOf` gives it. */
function stampedLog(blocks: number, cycleOf: (block: number) => number): LogArea {
  const bytes = new Uint8Array(blocks * BASIC_BLOCK);
  const view = new DataView(bytes.buffer);
  for (let block = 0; block < blocks; block++) view.setUint32(block * BASIC_BLOCK, cycleOf(block));
  return new LogArea(memoryVolumeBytes(bytes), 0, blocks);
}

describe('the head of an XFS log', () => {
  it('is where the cycle drops, or the first hole among the blocks just before it', async () => {
    expect(await findHead(stampedLog(10_000, (block) => (block < 5000 ? 3 : 2)))).toBe(5000);
    expect(await findHead(stampedLog(10_000, (block) => (block < 5000 && !(block >= 4000 && block < 4003) ? 3 : 2)))).toBe(4000);
    // A hole further back than the last 8 log buffers is no hole: the head stays.
    expect(await findHead(stampedLog(10_000, (block) => (block < 5000 && block !== 100 ? 3 : 2)))).toBe(5000);
  });

  it('finds a hole on either side of the log\'s end', async () => {
    // The whole log in one cycle but a hole near its end: the head is the hole.
    expect(await findHead(stampedLog(10_000, (block) => (block === 9_990 ? 2 : 3)))).toBe(9_990);
    // The head just past the start: a hole at the end is two cycles old.
    expect(await findHead(stampedLog(10_000, (block) => (block < 100 ? 3 : block === 9_950 ? 1 : 2)))).toBe(9_950);
  });
});

const UUID = Uint8Array.from({ length: 16 }, (_, index) => 0x40 + index);
const LOG_START_BLOCK = 16;
const superblock = testSuperblock(UUID, { log: { firstBlock: LOG_START_BLOCK, blocks: 16 } });

/** One operation: big-endian header (transaction id, length, client, flags), then its bytes. */
function operation(flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(12 + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 7);
  view.setUint32(4, payload.length);
  view.setUint8(8, 0x69);
  view.setUint8(9, flags);
  bytes.set(payload, 12);
  return bytes;
}

/** A transaction that writes 0xab over the first 128 bytes of 512-byte block `blkno`. */
function bufferTransaction(blkno: number): Uint8Array[] {
  const header = new Uint8Array(16);
  new DataView(header.buffer).setUint32(0, 0x5452414e, true);
  const format = new Uint8Array(24);
  const view = new DataView(format.buffer);
  view.setUint16(0, 0x123c, true);
  view.setUint16(2, 2, true);
  view.setUint16(6, 8, true);
  view.setBigInt64(8, BigInt(blkno), true);
  view.setUint32(16, 1, true);
  view.setUint32(20, 1, true);
  return [operation(0x01), operation(0, header), operation(0, format), operation(0, new Uint8Array(128).fill(0xab)), operation(0x02)];
}

/** Writes a record at log block `block` (cycle 1) holding `operations`, naming `tail`: its blocks, stamped and checksummed (or not). */
function writeRecord(log: Uint8Array, block: number, tail: number, operations: Uint8Array[], checksumHolds = true): number {
  const data = new Uint8Array(Math.ceil(operations.reduce((total, each) => total + each.length, 0) / BASIC_BLOCK) * BASIC_BLOCK);
  let at = 0;
  for (const each of operations) {
    data.set(each, at);
    at += each.length;
  }
  const header = new Uint8Array(BASIC_BLOCK);
  const view = new DataView(header.buffer);
  view.setUint32(0, RECORD_MAGIC);
  view.setUint32(4, 1);
  view.setUint32(8, 2);
  view.setUint32(12, data.length);
  view.setUint32(16, 1);
  view.setUint32(20, block);
  view.setUint32(24, 1);
  view.setUint32(28, tail);
  view.setUint32(40, operations.length);
  for (let index = 0; index * BASIC_BLOCK < data.length; index++) {
    header.set(data.subarray(index * BASIC_BLOCK, index * BASIC_BLOCK + 4), 44 + index * 4);
    new DataView(data.buffer).setUint32(index * BASIC_BLOCK, 1);
  }
  view.setUint32(300, 1);
  header.set(UUID, 304);
  view.setUint32(320, 32 * 1024);
  const crc = ~crc32c(data, crc32c(header.subarray(36, 328), crc32c(new Uint8Array(4), crc32c(header.subarray(0, 32))))) >>> 0;
  view.setUint32(32, checksumHolds ? crc : crc ^ 1, true);
  log.set(header, block * BASIC_BLOCK);
  log.set(data, (block + 1) * BASIC_BLOCK);
  return block + 1 + data.length / BASIC_BLOCK;
}

describe('a torn last record of an XFS log', () => {
  it('moves the head back to it, and the record before it is replayed from the tail it names', async () => {
    const volume = new Uint8Array(64 * 4096);
    const log = volume.subarray(LOG_START_BLOCK * 4096, (LOG_START_BLOCK + 16) * 4096);
    // Earlier records, all written in place: cycle 1 up to block 10.
    for (let block = 0; block < 10; block++) new DataView(log.buffer, log.byteOffset).setUint32(block * BASIC_BLOCK, 1);
    const target = 400;
    const afterFirst = writeRecord(log, 10, 10, bufferTransaction(target));
    // The torn one says the tail had moved past the first (its changes in place, as it claimed).
    writeRecord(log, afterFirst, afterFirst, bufferTransaction(target + 8), false);
    const state = await recoverXfsLog(memoryVolumeBytes(volume), superblock);
    expect(state.caution).toBeNull();
    const replayed = new Uint8Array(BASIC_BLOCK);
    await state.volume.read(replayed, target * BASIC_BLOCK);
    expect(replayed.subarray(0, 128).every((value) => value === 0xab)).toBe(true);
    expect(replayed[128]).toBe(0);
    const torn = new Uint8Array(BASIC_BLOCK);
    await state.volume.read(torn, (target + 8) * BASIC_BLOCK);
    expect(torn[0]).toBe(0);
  });
});
