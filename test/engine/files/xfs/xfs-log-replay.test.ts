/**
 * The replay rules the kernel-made fixtures (xfs-log-recovery.test.ts) do not reach on their own,
 * on logged transactions built here: a buffer's pieces land where its map says; a buffer cancelled
 * later in the log is not replayed until its last cancellation, and is again after it; a version 5
 * buffer already newer on disk than the transaction is left alone, and a replayed one is stamped
 * with its transaction's sequence number and checksummed; an unfinished change to a file's block
 * map is handed back and applied to the file's map as the kernel finishes it; an unfinished
 * exchange of two files' contents, or an item type not known, refuses the replay by name. And how operations become
 * transactions: a region continued over records is joined, a transaction the log ends inside is
 * not replayed, a region past any a kernel logs is refused.
 */
import { describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import { crc32c } from '../../../../src/shared/qcow2/files/crc32c.ts';
import type { Lsn } from '../../../../src/shared/qcow2/files/xfs/xfs-log-records.ts';
import { replayTransactions } from '../../../../src/shared/qcow2/files/xfs/xfs-log-replay.ts';
import { committedTransactions, type LogItem, type LogTransaction } from '../../../../src/shared/qcow2/files/xfs/xfs-log-transactions.ts';
import { withMapChanges } from '../../../../src/shared/qcow2/files/xfs/xfs-map-changes.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { testSuperblock } from './xfs-test-superblock.ts';

const UUID = Uint8Array.from({ length: 16 }, (_, index) => index + 1);
const superblock = testSuperblock(UUID);

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

/** An inode item (little-endian) logging the core of the first inode of the test's buffer: a regular file of `size` bytes. */
function inodeItem(size: bigint): LogItem {
  const format = new Uint8Array(56);
  const formatView = new DataView(format.buffer);
  formatView.setUint16(0, 0x123b, true);
  formatView.setUint16(2, 2, true);
  formatView.setUint32(4, 0x1, true);
  formatView.setBigInt64(40, BigInt(BLKNO), true);
  formatView.setInt32(48, 8, true);
  formatView.setInt32(52, 0, true);
  const core = new Uint8Array(176);
  const view = new DataView(core.buffer);
  view.setUint16(0, 0x494e, true);
  view.setUint16(2, 0o100644, true);
  view.setUint8(4, 3);
  view.setUint8(5, 2);
  view.setBigUint64(56, size, true);
  return { regions: [format, core] };
}

/** A block-map intent (BUI) of one extent: owner inode, start block, file offset, length, flags. */
function blockMapIntent(id: bigint, owner: bigint, startBlock: bigint, startOffset: bigint, count: number, flags: number): LogItem {
  const format = new Uint8Array(48);
  const view = new DataView(format.buffer);
  view.setUint16(0, 0x1244, true);
  view.setUint16(2, 1, true);
  view.setUint32(4, 1, true);
  view.setBigUint64(8, id, true);
  view.setBigUint64(16, owner, true);
  view.setBigUint64(24, startBlock, true);
  view.setBigUint64(32, startOffset, true);
  view.setUint32(40, count, true);
  view.setUint32(44, flags, true);
  return { regions: [format] };
}

const at = (cycle: number, block: number): Lsn => ({ cycle, block });
const transaction = (lsn: Lsn, ...items: LogItem[]): LogTransaction => ({ lsn, items });

async function replayed(volume: Uint8Array, ...transactions: LogTransaction[]): Promise<Uint8Array> {
  const { sectors } = await replayTransactions(memoryVolumeBytes(volume), superblock, transactions, true);
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

  it('replays a logged inode unless the inode on disk is strictly newer (several checkpoints can share a start LSN)', async () => {
    const volumeWith = (lsn: Lsn): Uint8Array => {
      const volume = new Uint8Array(64 * 4096);
      const view = new DataView(volume.buffer);
      view.setUint16(OFFSET, 0x494e);
      view.setUint8(OFFSET + 4, 3);
      view.setUint32(OFFSET + 112, lsn.cycle);
      view.setUint32(OFFSET + 116, lsn.block);
      return volume;
    };
    const sizeOf = (block: Uint8Array): bigint => new DataView(block.buffer, block.byteOffset).getBigUint64(56);
    // Already stamped with this transaction's LSN (an earlier checkpoint with the same start): replayed.
    const same = await replayed(volumeWith(at(1, 10)), transaction(at(1, 10), inodeItem(12345n)));
    expect(sizeOf(same)).toBe(12345n);
    expect(new DataView(same.buffer, same.byteOffset).getUint16(2)).toBe(0o100644);
    expect(checksumHolds(same.subarray(0, 512), 100)).toBe(true);
    const newer = await replayed(volumeWith(at(1, 11)), transaction(at(1, 10), inodeItem(12345n)));
    expect(sizeOf(newer)).toBe(0n);
  });

  it('hands back a block-map change the guest had not finished (as the kernel finishes it), and refuses an unfinished exchange or an item type it does not know', async () => {
    const volume = memoryVolumeBytes(new Uint8Array(64 * 4096));
    const replay = (...transactions: LogTransaction[]) => replayTransactions(volume, superblock, transactions, true);
    // A reflink's remap of 4 blocks at block 10 into inode 131's file block 0; done, it leaves nothing to finish.
    const remap = blockMapIntent(7n, 131n, 10n, 0n, 4, 1);
    expect((await replay(transaction(at(1, 10), remap))).mapChanges).toEqual([{ inode: 131, kind: 'map', fileBlock: 0, volumeBlock: 10, count: 4, unwritten: false }]);
    expect((await replay(transaction(at(1, 10), remap), transaction(at(1, 20), intent(0x1245, 7n)))).mapChanges).toEqual([]);
    expect((await replay(transaction(at(1, 10), blockMapIntent(8n, 131n, 0n, 2n, 3, 2 | 0x40000000)))).mapChanges).toEqual([{ inode: 131, kind: 'unmap', fileBlock: 2, volumeBlock: 0, count: 3, unwritten: true }]);
    const exchange = await replay(transaction(at(1, 10), intent(0x1248, 9n))).catch((error: unknown) => error);
    expect(exchange).toBeInstanceOf(Qcow2Error);
    expect((exchange as Qcow2Error).code).toBe('FILESYSTEM_UNSUPPORTED');
    expect((exchange as Qcow2Error).message).toMatch(/exchange of two files' contents that the guest had not finished/);
    const unknown = await replay(transaction(at(1, 10), intent(0x1299, 1n))).catch((error: unknown) => error);
    expect((unknown as Qcow2Error).code).toBe('FILESYSTEM_UNSUPPORTED');
    expect((unknown as Qcow2Error).message).toMatch(/items of type 0x1299/);
  });

  it('applies block-map changes to a file\'s map in order: an unmap cuts runs, a map fills a hole, a map over data is refused', () => {
    const map = { blockBytes: 4096, runs: [{ fileBlock: 0, volumeBlock: 100, count: 8 }], unwritten: [{ fileBlock: 20, volumeBlock: 300, count: 2 }], nodeBlocks: [] };
    const change = (kind: 'map' | 'unmap', fileBlock: number, volumeBlock: number, count: number, unwritten = false) => ({ inode: 131, kind, fileBlock, volumeBlock, count, unwritten });
    const changed = withMapChanges(map, [change('unmap', 2, 0, 2), change('map', 2, 500, 2), change('unmap', 20, 0, 1), change('map', 10, 600, 1, true)]);
    expect(changed.runs).toEqual([{ fileBlock: 0, volumeBlock: 100, count: 2 }, { fileBlock: 2, volumeBlock: 500, count: 2 }, { fileBlock: 4, volumeBlock: 104, count: 4 }]);
    expect(changed.unwritten).toEqual([{ fileBlock: 10, volumeBlock: 600, count: 1 }, { fileBlock: 21, volumeBlock: 301, count: 1 }]);
    expect(() => withMapChanges(map, [change('map', 6, 700, 4)])).toThrow(/maps file block 6 again/);
  });
});

/** One operation: big-endian header (transaction id, length, client 0x69, flags), then its bytes. */
function operation(tid: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(12 + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, tid);
  view.setUint32(4, payload.length);
  view.setUint8(8, 0x69);
  view.setUint8(9, flags);
  bytes.set(payload, 12);
  return bytes;
}

function record(block: number, ...operations: Uint8Array[]): { lsn: Lsn; operations: number; data: Uint8Array } {
  const data = new Uint8Array(operations.reduce((total, each) => total + each.length, 0));
  let offset = 0;
  for (const each of operations) {
    data.set(each, offset);
    offset += each.length;
  }
  return { lsn: at(1, block), operations: operations.length, data };
}

const START = 0x01;
const COMMIT = 0x02;
const CONTINUE = 0x04;
const WAS_CONTINUED = 0x08;
const header = (): Uint8Array => {
  const bytes = new Uint8Array(16);
  new DataView(bytes.buffer).setUint32(0, 0x5452414e, true);
  return bytes;
};

describe('XFS log operations into transactions', () => {
  it('joins a region continued in the next record, and drops a transaction the log ends inside', () => {
    const item = bufferItem({ 0: 0xaa });
    const piece = item.regions[1] as Uint8Array;
    const transactions = committedTransactions(
      [
        record(10, operation(7, START), operation(7, 0, header()), operation(7, 0, item.regions[0]), operation(7, CONTINUE, piece.subarray(0, 100)), operation(9, START), operation(9, 0, header())),
        record(20, operation(7, WAS_CONTINUED, piece.subarray(100)), operation(7, COMMIT), operation(9, 0, item.regions[0])),
      ],
      true,
    );
    expect(transactions).toHaveLength(1);
    expect(transactions[0]!.lsn).toEqual(at(1, 10));
    expect(transactions[0]!.items).toHaveLength(1);
    expect(transactions[0]!.items[0]!.regions[1]).toEqual(piece);
  });

  it('refuses a region continued past any a kernel logs (a damaged log cannot make it copy without end)', () => {
    const item = bufferItem({ 0: 0xaa });
    const records = [record(10, operation(7, START), operation(7, 0, header()), operation(7, 0, item.regions[0]), operation(7, CONTINUE, new Uint8Array(128)))];
    for (let index = 0; index < 20; index++) records.push(record(20 + index, operation(7, WAS_CONTINUED | CONTINUE, new Uint8Array(64 * 1024))));
    let thrown: unknown = null;
    try {
      committedTransactions(records, true);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(Qcow2Error);
    expect((thrown as Qcow2Error).code).toBe('FILESYSTEM_CORRUPT');
    expect((thrown as Qcow2Error).message).toMatch(/region of \d+ bytes or more/);
  });
});
