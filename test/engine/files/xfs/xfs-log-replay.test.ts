/**
 * The replay rules the kernel-made fixtures (xfs-log-recovery.test.ts) do not reach on their own,
 * on logged transactions built here: a buffer's pieces land where its map says; a buffer cancelled
 * later in the log is not replayed until its last cancellation, and is again after it; a version 5
 * buffer already newer on disk than the transaction is left alone, and a replayed one is stamped
 * with its transaction's sequence number and checksummed; an unfinished change to a file's block
 * map, or an item type not known, refuses the replay by name.
 */
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { crc32c } from '../../../../src/shared/qcow2/files/crc32c.ts';
import type { Lsn } from '../../../../src/shared/qcow2/files/xfs/xfs-log-records.ts';
import { replayTransactions } from '../../../../src/shared/qcow2/files/xfs/xfs-log-replay.ts';
import type { LogItem, LogTransaction } from '../../../../src/shared/qcow2/files/xfs/xfs-log-transactions.ts';
import type { XfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';

const UUID = Uint8Array.from({ length: 16 }, (_, index) => index + 1);
const superblock: XfsSuperblock = {
  version: 5,
  blockBytes: 4096,
  dataBlocks: 64,
  groupBlocks: 64,
  groupBlockBits: 6,
  groupCount: 1,
  inodeBytes: 512,
  inodesPerBlockBits: 3,
  rootInode: 128,
  folderBlockBytes: 4096,
  hasFileType: true,
  bigTime: true,
  largeExtentCounts: false,
  asciiCaseInsensitive: false,
  log: null,
  logIncompatible: 0,
  uuid: UUID,
  metaUuid: UUID,
  inodeAlignmentBlocks: 8,
  label: '',
};

const ITEM_BUF = 0x123c;
const BLF_CANCEL = 0x2;
/** The buffer the tests log: one 4 KiB block at 512-byte block 80. */
const BLKNO = 80;
const OFFSET = BLKNO * 512;

/** A buffer item (little-endian, as an x86 guest logs it) with the 128-byte pieces `pieces` (chunk number → fill byte). */
function bufferItem(pieces: Record<number, number>, flags = 0): LogItem {
  const chunks = Object.keys(pieces).map(Number).sort((a, b) => a - b);
  const map = new Uint32Array(1);
  for (const chunk of chunks) map[0] = (map[0] as number) | (1 << chunk);
  const format = new Uint8Array(24);
  const view = new DataView(format.buffer);
  view.setUint16(0, ITEM_BUF, true);
  view.setUint16(2, 1 + chunks.length, true);
  view.setUint16(4, flags, true);
  view.setUint16(6, 8, true);
  view.setBigInt64(8, BigInt(BLKNO), true);
  view.setUint32(16, 1, true);
  view.setUint32(20, map[0] as number, true);
  return { regions: [format, ...chunks.map((chunk) => new Uint8Array(128).fill(pieces[chunk] as number))] };
}

function intent(type: number, id: bigint): LogItem {
  const format = new Uint8Array(16);
  const view = new DataView(format.buffer);
  view.setUint16(0, type, true);
  view.setUint16(2, 1, true);
  view.setBigUint64(8, id, true);
  return { regions: [format] };
}

const at = (cycle: number, block: number): Lsn => ({ cycle, block });
const transaction = (lsn: Lsn, ...items: LogItem[]): LogTransaction => ({ lsn, items });

async function replayed(volume: Uint8Array, ...transactions: LogTransaction[]): Promise<Uint8Array> {
  const sectors = await replayTransactions(memoryVolumeBytes(volume), superblock, transactions, true);
  const result = volume.slice();
  for (const [sector, bytes] of sectors) result.set(bytes, sector * 512);
  return result.subarray(OFFSET, OFFSET + 4096);
}

/** A folder data block (XDD3) of this filesystem on disk, stamped with `lsn`. */
function folderBlockOnDisk(lsn: Lsn): Uint8Array {
  const volume = new Uint8Array(64 * 4096);
  const view = new DataView(volume.buffer);
  view.setUint32(OFFSET, 0x58444433);
  view.setUint32(OFFSET + 16, lsn.cycle);
  view.setUint32(OFFSET + 20, lsn.block);
  volume.set(UUID, OFFSET + 24);
  return volume;
}

function checksumHolds(block: Uint8Array, crcAt: number): boolean {
  const copy = block.slice();
  copy.fill(0, crcAt, crcAt + 4);
  return new DataView(block.buffer, block.byteOffset).getUint32(crcAt, true) === (~crc32c(copy) >>> 0);
}

describe('XFS log replay rules', () => {
  it("copies a buffer's logged pieces where its map says, and nothing else", async () => {
    const block = await replayed(new Uint8Array(64 * 4096), transaction(at(1, 10), bufferItem({ 0: 0xaa, 2: 0xbb, 3: 0xbb })));
    expect(block.subarray(0, 128).every((value) => value === 0xaa)).toBe(true);
    expect(block.subarray(128, 256).every((value) => value === 0)).toBe(true);
    expect(block.subarray(256, 512).every((value) => value === 0xbb)).toBe(true);
    expect(block.subarray(512).every((value) => value === 0)).toBe(true);
  });

  it('does not replay a buffer a later transaction cancels (freed), and replays it again after its last cancellation', async () => {
    const block = await replayed(
      new Uint8Array(64 * 4096),
      transaction(at(1, 10), bufferItem({ 0: 0xaa })),
      transaction(at(1, 20), bufferItem({}, BLF_CANCEL)),
      transaction(at(1, 30), bufferItem({ 1: 0xcc })),
    );
    expect(block[0]).toBe(0);
    expect(block[128]).toBe(0xcc);
    // Two cancellations: everything before the second is skipped.
    const twice = await replayed(
      new Uint8Array(64 * 4096),
      transaction(at(1, 10), bufferItem({}, BLF_CANCEL)),
      transaction(at(1, 20), bufferItem({ 2: 0xdd })),
      transaction(at(1, 30), bufferItem({}, BLF_CANCEL)),
      transaction(at(1, 40), bufferItem({ 3: 0xee })),
    );
    expect(twice[256]).toBe(0);
    expect(twice[384]).toBe(0xee);
  });

  it('leaves a version 5 buffer already newer on disk than the transaction alone, and stamps and checksums one it replays', async () => {
    const newer = await replayed(folderBlockOnDisk(at(5, 0)), transaction(at(4, 10), bufferItem({ 3: 0xaa })));
    expect(newer[384]).toBe(0);
    const block = await replayed(folderBlockOnDisk(at(5, 0)), transaction(at(5, 100), bufferItem({ 3: 0xaa })));
    expect(block[384]).toBe(0xaa);
    const view = new DataView(block.buffer, block.byteOffset);
    expect([view.getUint32(16), view.getUint32(20)]).toEqual([5, 100]);
    expect(checksumHolds(block, 4)).toBe(true);
  });

  it('refuses by name a change to a block map the guest had not finished, and an item type it does not know', async () => {
    const volume = new Uint8Array(64 * 4096);
    // A block-map intent and the item that says it was done: nothing to finish.
    await expect(replayed(volume, transaction(at(1, 10), intent(0x1244, 7n)), transaction(at(1, 20), intent(0x1245, 7n)))).resolves.toBeDefined();
    const unfinished = await replayed(volume, transaction(at(1, 10), intent(0x1244, 7n))).catch((error: unknown) => error);
    expect(unfinished).toBeInstanceOf(Qcow2Error);
    expect((unfinished as Qcow2Error).code).toBe('FILESYSTEM_UNSUPPORTED');
    expect((unfinished as Qcow2Error).message).toMatch(/block map that the guest had not finished/);
    const unknown = await replayed(volume, transaction(at(1, 10), intent(0x1299, 1n))).catch((error: unknown) => error);
    expect((unknown as Qcow2Error).code).toBe('FILESYSTEM_UNSUPPORTED');
    expect((unknown as Qcow2Error).message).toMatch(/items of type 0x1299/);
  });
});
