/**
 * Replaying an XFS log's committed transactions over the volume, in memory (the volume is never
 * written), as the kernel's recovery does before a mount:
 *  - two passes: the first counts the buffers each transaction cancels (freed metadata), the
 *    second replays, skipping a buffer while a later cancellation of it is still to come;
 *  - within a transaction, buffers and new inode chunks first, then inodes and the rest, then
 *    unlinked-list updates and cancellations (xlog_recover_reorder_trans's order);
 *  - a buffer item copies its logged 128-byte pieces over the buffer; an inode item rewrites the
 *    inode (xfs-log-inode.ts); a new inode chunk (icreate) is written as mkfs would leave it;
 *  - version 5: a buffer or inode already newer on disk than the transaction is left alone, and a
 *    replayed buffer is stamped with its transaction's sequence number and gets its CRC again,
 *    as its write-back would (xfs-log-checksums.ts).
 * Unlinked-list pointers (inode buffers logged for them) and quota buffers are not replayed: no
 * listing reads them. Intents to free space or change reverse-map and reference-count trees are
 * finished by the kernel after replay, changing no file; an intent to change a file's block map
 * (a reflink's remap, the end of a copy-on-write) left unfinished is handed back, to be applied to
 * that file's block map as the kernel finishes it (xfs-map-changes.ts). An unfinished exchange of
 * two files' contents, or an item type this code does not know, refuses the replay
 * (FILESYSTEM_UNSUPPORTED).
 */
import type { VolumeBytes } from '../filesystem.ts';
import { bytesEqual } from '../../format/zeroes.ts';
import { corrupt, unsupported } from './xfs-bytes.ts';
import { bufferLsn, lsnValue, refreshChecksums, stampLsn, storeChecksum, superblockUuidAt } from './xfs-log-checksums.ts';
import { changesTreeOwners, inodeItemFormat, replayInode } from './xfs-log-inode.ts';
import { BASIC_BLOCK, type Lsn } from './xfs-log-records.ts';
import { readUint16, type LogItem, type LogTransaction } from './xfs-log-transactions.ts';
import type { XfsMapChange } from './xfs-map-changes.ts';
import { volumeBlockOf, type XfsSuperblock } from './xfs-superblock.ts';

const ITEM_EFI = 0x1236;
const ITEM_EFD = 0x1237;
const ITEM_INODE = 0x123b;
const ITEM_BUF = 0x123c;
const ITEM_DQUOT = 0x123d;
const ITEM_QUOTAOFF = 0x123e;
const ITEM_ICREATE = 0x123f;
const ITEM_RUI = 0x1240;
const ITEM_RUD = 0x1241;
const ITEM_CUI = 0x1242;
const ITEM_CUD = 0x1243;
const ITEM_BUI = 0x1244;
const ITEM_BUD = 0x1245;
const ITEM_ATTRI = 0x1246;
const ITEM_ATTRD = 0x1247;
const ITEM_XMI = 0x1248;
const ITEM_XMD = 0x1249;
/** Items that change nothing a listing reads (free space, reverse maps, reference counts, quotas, extended attributes). */
const NOT_REPLAYED = new Set([ITEM_EFI, ITEM_EFD, ITEM_RUI, ITEM_RUD, ITEM_CUI, ITEM_CUD, ITEM_DQUOT, ITEM_QUOTAOFF, ITEM_ATTRI, ITEM_ATTRD]);
/** Intents that change a file's block map, and the items that say each was done (their id at byte 8 in both). */
const MAP_INTENTS = new Set([ITEM_BUI, ITEM_XMI]);
const MAP_DONE = new Set([ITEM_BUD, ITEM_XMD]);
/** xfs_map_extent's flags: its type (map, unmap) in the low byte, then the fork and kind of space. */
const BMAP_MAP = 1;
const BMAP_UNMAP = 2;
const BMAP_ATTR_FORK = 0x80000000;
const BMAP_UNWRITTEN = 0x40000000;
const BMAP_REALTIME = 0x20000000;
const BMAP_KNOWN_FLAGS = 0xff | BMAP_ATTR_FORK | BMAP_UNWRITTEN | BMAP_REALTIME;

const BLF_INODE_BUF = 0x1;
const BLF_CANCEL = 0x2;
const BLF_QUOTA = 0x4 | 0x8 | 0x10;
const BLF_CHUNK = 128;
/** The largest buffer XFS logs: a 64 KiB folder block (inode clusters and tree blocks are smaller). */
const MAX_BUFFER_SECTORS = 128;
const INODE_MAGIC = 0x494e;
const NULL_AGINO = 0xffffffff;

/** The sectors recovery changes, by sector number (512 bytes from the volume's start). */
export type ReplayedSectors = Map<number, Uint8Array>;

export interface ReplayResult {
  sectors: ReplayedSectors;
  /** Block-map changes the log left to be finished (data forks), in log order. */
  mapChanges: XfsMapChange[];
}

interface BufferFormat {
  flags: number;
  blkno: number;
  blocks: number;
  map: Uint32Array;
}

/** Replays `transactions` (in commit order) over `volume`: the sectors recovery would change, with their new bytes, and the block-map changes it would finish. */
export async function replayTransactions(volume: VolumeBytes, superblock: XfsSuperblock, transactions: readonly LogTransaction[], littleEndian: boolean): Promise<ReplayResult> {
  const replay = new Replay(volume, superblock, littleEndian);
  for (const transaction of transactions) for (const item of transaction.items) replay.countCancellation(item);
  for (const transaction of transactions) await replay.transaction(transaction);
  return replay.finish();
}

class Replay {
  private readonly overlay = new Map<number, Uint8Array>();
  /** Sectors read from the volume that replay has not changed. */
  private readonly unchanged = new Map<number, Uint8Array>();
  private readonly cancellations = new Map<string, number>();
  /** Buffers replayed since the sequence number last changed: stamped when it does (the kernel writes them then). */
  private pendingStamps = new Map<string, { offset: number; length: number; lsn: Lsn }>();
  private readonly replayedBuffers = new Map<string, { offset: number; length: number }>();
  /** Block-map intents not yet done, by id: the change to finish, or why it cannot be. */
  private readonly openIntents = new Map<bigint, XfsMapChange | string | null>();
  private batch: Lsn | null = null;
  private readonly volume: VolumeBytes;
  private readonly superblock: XfsSuperblock;
  private readonly littleEndian: boolean;
  private readonly uuidAt: number;

  constructor(volume: VolumeBytes, superblock: XfsSuperblock, littleEndian: boolean) {
    this.volume = volume;
    this.superblock = superblock;
    this.littleEndian = littleEndian;
    this.uuidAt = superblockUuidAt(!bytesEqual(superblock.metaUuid, superblock.uuid));
  }

  countCancellation(item: LogItem): void {
    if (this.type(item) !== ITEM_BUF) return;
    const format = this.bufferFormat(item);
    if ((format.flags & BLF_CANCEL) === 0) return;
    const key = bufferKey(format.blkno, format.blocks);
    this.cancellations.set(key, (this.cancellations.get(key) ?? 0) + 1);
  }

  async transaction(transaction: LogTransaction): Promise<void> {
    if (this.batch === null || this.batch.cycle !== transaction.lsn.cycle || this.batch.block !== transaction.lsn.block) {
      this.stampPending();
      this.batch = transaction.lsn;
    }
    for (const item of this.inReplayOrder(transaction.items)) await this.item(item, transaction.lsn);
  }

  finish(): ReplayResult {
    this.stampPending();
    const mapChanges: XfsMapChange[] = [];
    for (const pending of this.openIntents.values()) {
      if (typeof pending === 'string') throw unsupported(`its log holds ${pending} that the guest had not finished, which Cowbell cannot finish`);
      if (pending !== null) mapChanges.push(pending);
    }
    if (this.superblock.version === 5) {
      for (const { offset, length } of this.replayedBuffers.values()) {
        const bytes = this.readOverlaid(offset, length);
        if (bytes === null) continue;
        refreshChecksums(bytes, this.superblock.inodeBytes, this.uuidAt);
        this.write(offset, bytes);
      }
    }
    return { sectors: this.overlay, mapChanges };
  }

  /** Buffers and new inode chunks, then inodes and the rest, then unlinked-list buffers, then cancellations. */
  private inReplayOrder(items: readonly LogItem[]): LogItem[] {
    const first: LogItem[] = [];
    const middle: LogItem[] = [];
    const unlinked: LogItem[] = [];
    const cancelled: LogItem[] = [];
    for (const item of items) {
      const type = this.type(item);
      if (type === ITEM_ICREATE) first.push(item);
      else if (type !== ITEM_BUF) middle.push(item);
      else {
        const { flags } = this.bufferFormat(item);
        if ((flags & BLF_CANCEL) !== 0) cancelled.unshift(item);
        else if ((flags & BLF_INODE_BUF) !== 0) unlinked.unshift(item);
        else first.push(item);
      }
    }
    return [...first, ...middle, ...unlinked, ...cancelled];
  }

  private async item(item: LogItem, lsn: Lsn): Promise<void> {
    const type = this.type(item);
    if (type === ITEM_BUF) await this.buffer(item, lsn);
    else if (type === ITEM_INODE) await this.inode(item, lsn);
    else if (type === ITEM_ICREATE) this.inodeChunk(item);
    else if (type === ITEM_BUI) this.openIntents.set(this.intentId(item), this.mapChange(item));
    else if (MAP_INTENTS.has(type)) this.openIntents.set(this.intentId(item), "an exchange of two files' contents");
    else if (MAP_DONE.has(type)) this.openIntents.delete(this.intentId(item));
    else if (!NOT_REPLAYED.has(type)) throw unsupported(`its log holds items of type 0x${type.toString(16)}`);
  }

  private async buffer(item: LogItem, lsn: Lsn): Promise<void> {
    const format = this.bufferFormat(item);
    const key = bufferKey(format.blkno, format.blocks);
    if ((format.flags & BLF_CANCEL) !== 0) {
      // The last cancellation of a buffer ends its cancelled span: what follows it is replayed.
      const count = this.cancellations.get(key);
      if (count !== undefined) {
        if (count <= 1) this.cancellations.delete(key);
        else this.cancellations.set(key, count - 1);
        return;
      }
    } else if (this.cancellations.has(key)) return;
    // Only the unlinked-list pointers of an inode buffer, and quota records: nothing a listing reads.
    if ((format.flags & (BLF_INODE_BUF | BLF_QUOTA)) !== 0) return;
    if (format.blocks > MAX_BUFFER_SECTORS) throw corrupt(`a logged buffer of ${format.blocks} blocks at block ${format.blkno}`);
    const offset = format.blkno * BASIC_BLOCK;
    const length = format.blocks * BASIC_BLOCK;
    const bytes = await this.read(offset, length, `a logged buffer at block ${format.blkno}`);
    if (this.superblock.version === 5 && this.newerOnDisk(bytes, lsn)) return;
    let bit = 0;
    let region = 1;
    for (;;) {
      bit = nextSetBit(format.map, bit);
      if (bit < 0) break;
      let bits = contiguousBits(format.map, bit);
      const source = item.regions[region];
      if (source === undefined || source.length % BLF_CHUNK !== 0) throw corrupt(`a logged buffer at block ${format.blkno} lacks the pieces its map names`);
      bits = Math.min(bits, source.length / BLF_CHUNK);
      if ((bit + bits) * BLF_CHUNK > bytes.length) throw corrupt(`a logged buffer at block ${format.blkno} has pieces past its end`);
      bytes.set(source.subarray(0, bits * BLF_CHUNK), bit * BLF_CHUNK);
      region++;
      bit += bits;
    }
    this.write(offset, bytes);
    this.pendingStamps.set(key, { offset, length, lsn });
    this.replayedBuffers.set(key, { offset, length });
  }

  private async inode(item: LogItem, lsn: Lsn): Promise<void> {
    const format = inodeItemFormat(item.regions[0] as Uint8Array, this.littleEndian);
    if (changesTreeOwners(format)) throw unsupported('its log swaps the owners of extent tree blocks (a defragmentation the guest had not finished)');
    if (this.cancellations.has(bufferKey(format.blkno, format.blocks))) return;
    const { inodeBytes } = this.superblock;
    if (format.blocks > MAX_BUFFER_SECTORS) throw corrupt(`a logged inode's cluster of ${format.blocks} blocks`);
    const offset = format.blkno * BASIC_BLOCK;
    const length = format.blocks * BASIC_BLOCK;
    if (format.offset < 0 || format.offset % inodeBytes !== 0 || format.offset + inodeBytes > length) throw corrupt(`a logged inode at offset ${format.offset} of its ${length}-byte buffer`);
    // The whole cluster buffer is read the first time (its other inodes are usually logged too), then the inode alone.
    const at = offset + format.offset;
    const inode = this.known(at, inodeBytes) ? await this.read(at, inodeBytes, 'a logged inode') : (await this.read(offset, length, `a logged inode at block ${format.blkno}`)).subarray(format.offset, format.offset + inodeBytes);
    if (replayInode(inode, format, item.regions, lsn, this.littleEndian, this.superblock) === 'replayed') this.write(offset + format.offset, inode);
  }

  /** A new chunk of inodes (version 5 logs the chunk's creation, not its bytes): each inode free, numbered, checksummed. */
  private inodeChunk(item: LogItem): void {
    const region = item.regions[0] as Uint8Array;
    if (region.length < 28 || readUint16(region, 2, this.littleEndian) !== 1) throw corrupt('a logged inode chunk creation of the wrong size');
    const view = new DataView(region.buffer, region.byteOffset, region.length);
    const group = view.getUint32(4);
    const groupBlock = view.getUint32(8);
    const count = view.getUint32(12);
    const inodeBytes = view.getUint32(16);
    const blocks = view.getUint32(20);
    const generation = view.getUint32(24);
    const sb = this.superblock;
    const perBlock = 2 ** sb.inodesPerBlockBits;
    const chunkInodes = Math.max(64, perBlock);
    if (group >= sb.groupCount || groupBlock === 0 || groupBlock + blocks > sb.groupBlocks || inodeBytes !== sb.inodeBytes || count !== chunkInodes || blocks !== chunkInodes / perBlock) {
      throw corrupt(`a logged inode chunk of ${count} inodes, ${blocks} blocks at block ${groupBlock} of group ${group}`);
    }
    const sectorsPerBlock = sb.blockBytes / BASIC_BLOCK;
    const firstSector = (group * sb.groupBlocks + groupBlock) * sectorsPerBlock;
    // Each inode cluster buffer of the chunk may have been freed since: then the chunk is not written (as the kernel does).
    const clusterBlocks = inodeClusterBlocks(sb);
    for (let block = 0; block < blocks; block += clusterBlocks) {
      if (this.cancellations.has(bufferKey(firstSector + block * sectorsPerBlock, clusterBlocks * sectorsPerBlock))) return;
    }
    const bytes = new Uint8Array(blocks * sb.blockBytes);
    const chunk = new DataView(bytes.buffer);
    const firstInode = group * 2 ** (sb.groupBlockBits + sb.inodesPerBlockBits) + groupBlock * perBlock;
    for (let index = 0; index < count; index++) {
      const at = index * inodeBytes;
      chunk.setUint16(at, INODE_MAGIC);
      chunk.setUint8(at + 4, sb.version === 5 ? 3 : 2);
      chunk.setUint32(at + 92, generation);
      chunk.setUint32(at + 96, NULL_AGINO);
      if (sb.version === 5) {
        chunk.setBigUint64(at + 152, BigInt(firstInode + index));
        bytes.set(sb.metaUuid, at + 160);
        storeChecksum(bytes.subarray(at, at + inodeBytes), 100);
      }
    }
    this.write(firstSector * BASIC_BLOCK, bytes);
  }

  private newerOnDisk(bytes: Uint8Array, lsn: Lsn): boolean {
    const onDisk = bufferLsn(bytes, this.superblock.metaUuid, this.uuidAt);
    return onDisk !== null && onDisk !== 0n && onDisk !== 0xffffffffffffffffn && onDisk >= lsnValue(lsn);
  }

  private stampPending(): void {
    if (this.superblock.version === 5) {
      for (const { offset, length, lsn } of this.pendingStamps.values()) {
        const bytes = this.readOverlaid(offset, length);
        if (bytes === null) continue;
        stampLsn(bytes, lsn, this.uuidAt);
        this.write(offset, bytes);
      }
    }
    this.pendingStamps = new Map();
  }

  private type(item: LogItem): number {
    const format = item.regions[0] as Uint8Array;
    if (format.length < 4) throw corrupt('a logged item without its format');
    return readUint16(format, 0, this.littleEndian);
  }

  private bufferFormat(item: LogItem): BufferFormat {
    const region = item.regions[0] as Uint8Array;
    if (region.length < 20) throw corrupt(`a logged buffer format of ${region.length} bytes`);
    const view = new DataView(region.buffer, region.byteOffset, region.length);
    const blkno = view.getBigInt64(8, this.littleEndian);
    const words = view.getUint32(16, this.littleEndian);
    if (blkno < 0n || blkno > BigInt(Number.MAX_SAFE_INTEGER) || 20 + words * 4 > region.length) throw corrupt('a logged buffer format that names no place');
    const map = new Uint32Array(words);
    for (let index = 0; index < words; index++) map[index] = view.getUint32(20 + index * 4, this.littleEndian);
    return { flags: view.getUint16(4, this.littleEndian), blkno: Number(blkno), blocks: view.getUint16(6, this.littleEndian), map };
  }

  /** A block-map intent's one extent (xfs_map_extent: owner, start block, file offset, length, flags), as the change it asks for. */
  private mapChange(item: LogItem): XfsMapChange | string | null {
    const region = item.regions[0] as Uint8Array;
    if (region.length < 48) throw corrupt(`a logged block-map intent of ${region.length} bytes`);
    const view = new DataView(region.buffer, region.byteOffset, region.length);
    const le = this.littleEndian;
    if (view.getUint32(4, le) !== 1) throw corrupt(`a logged block-map intent of ${view.getUint32(4, le)} extents`);
    const owner = view.getBigUint64(16, le);
    const startBlock = view.getBigUint64(24, le);
    const startOffset = view.getBigUint64(32, le);
    const count = view.getUint32(40, le);
    const flags = view.getUint32(44, le);
    const kind = flags & 0xff;
    if ((kind !== BMAP_MAP && kind !== BMAP_UNMAP) || (flags & ~BMAP_KNOWN_FLAGS) !== 0 || count === 0) throw corrupt(`a logged block-map intent with flags 0x${flags.toString(16)}, ${count} blocks`);
    if ((flags & BMAP_REALTIME) !== 0) return 'a change to a block map on the realtime device';
    const limit = BigInt(Number.MAX_SAFE_INTEGER);
    if (owner > limit || startBlock > limit || startOffset > limit) throw corrupt('a logged block-map intent beyond any volume');
    // The attribute fork holds no file content: finishing it changes nothing listed.
    if ((flags & BMAP_ATTR_FORK) !== 0) return null;
    return {
      inode: Number(owner),
      kind: kind === BMAP_MAP ? 'map' : 'unmap',
      fileBlock: Number(startOffset),
      volumeBlock: kind === BMAP_MAP ? volumeBlockOf(this.superblock, Number(startBlock), count, 'a logged block-map intent') : 0,
      count,
      unwritten: (flags & BMAP_UNWRITTEN) !== 0,
    };
  }

  private intentId(item: LogItem): bigint {
    const region = item.regions[0] as Uint8Array;
    if (region.length < 16) throw corrupt('a logged intent without its id');
    return new DataView(region.buffer, region.byteOffset, region.length).getBigUint64(8, this.littleEndian);
  }

  /** The bytes at [offset, offset + length) as replay has left them so far (sectors read once: replay reads the same buffers again and again). */
  private async read(offset: number, length: number, what: string): Promise<Uint8Array> {
    if (length <= 0 || offset % BASIC_BLOCK !== 0 || length % BASIC_BLOCK !== 0 || offset + length > this.volume.length) throw corrupt(`${what} lies outside the volume`);
    const bytes = new Uint8Array(length);
    const first = offset / BASIC_BLOCK;
    const known = this.known(offset, length);
    if (!known) {
      await this.volume.read(bytes, offset);
      const kept = bytes.slice();
      for (let at = 0; at < length; at += BASIC_BLOCK) this.unchanged.set(first + at / BASIC_BLOCK, kept.subarray(at, at + BASIC_BLOCK));
    }
    for (let at = 0; at < length; at += BASIC_BLOCK) {
      const sector = this.overlay.get(first + at / BASIC_BLOCK) ?? (known ? this.unchanged.get(first + at / BASIC_BLOCK) : undefined);
      if (sector !== undefined) bytes.set(sector, at);
    }
    return bytes;
  }

  /** Whether every sector of the range was read or replayed already. */
  private known(offset: number, length: number): boolean {
    for (let sector = offset / BASIC_BLOCK; sector < (offset + length) / BASIC_BLOCK; sector++) if (!this.overlay.has(sector) && !this.unchanged.has(sector)) return false;
    return true;
  }

  /** The same, for a range replay has already read once (all of it overlaid). */
  private readOverlaid(offset: number, length: number): Uint8Array | null {
    const bytes = new Uint8Array(length);
    for (let at = 0; at < length; at += BASIC_BLOCK) {
      const sector = this.overlay.get((offset + at) / BASIC_BLOCK);
      if (sector === undefined) return null;
      bytes.set(sector.subarray(0, Math.min(BASIC_BLOCK, length - at)), at);
    }
    return bytes;
  }

  private write(offset: number, bytes: Uint8Array): void {
    if (offset % BASIC_BLOCK !== 0 || bytes.length % BASIC_BLOCK !== 0) throw corrupt(`a replayed write of ${bytes.length} bytes at ${offset}`);
    const kept = bytes.slice();
    for (let at = 0; at < bytes.length; at += BASIC_BLOCK) this.overlay.set((offset + at) / BASIC_BLOCK, kept.subarray(at, at + BASIC_BLOCK));
  }
}

/** Copies the overlay's sectors that fall in [offset, offset + buffer.length) over `buffer`. */
export function overlaySectors(overlay: ReadonlyMap<number, Uint8Array>, buffer: Uint8Array, offset: number): void {
  if (overlay.size === 0) return;
  const end = offset + buffer.length;
  for (let sector = Math.floor(offset / BASIC_BLOCK); sector * BASIC_BLOCK < end; sector++) {
    const content = overlay.get(sector);
    if (content === undefined) continue;
    const start = sector * BASIC_BLOCK;
    const from = Math.max(offset, start);
    const to = Math.min(end, start + BASIC_BLOCK);
    buffer.set(content.subarray(from - start, to - start), from - offset);
  }
}

/** Blocks per inode cluster (the unit inode buffers are read and written in). */
function inodeClusterBlocks(superblock: XfsSuperblock): number {
  let clusterBytes = 8192;
  if (superblock.version === 5) {
    const scaled = clusterBytes * (superblock.inodeBytes / 256);
    if (superblock.inodeAlignmentBlocks >= Math.floor(scaled / superblock.blockBytes)) clusterBytes = scaled;
  }
  return Math.max(1, Math.floor(clusterBytes / superblock.blockBytes));
}

function bufferKey(blkno: number, blocks: number): string {
  return `${blkno}/${blocks}`;
}

function nextSetBit(map: Uint32Array, from: number): number {
  for (let bit = from; bit < map.length * 32; bit++) if ((((map[bit >>> 5] as number) >>> (bit & 31)) & 1) !== 0) return bit;
  return -1;
}

function contiguousBits(map: Uint32Array, from: number): number {
  let bit = from;
  while (bit < map.length * 32 && (((map[bit >>> 5] as number) >>> (bit & 31)) & 1) !== 0) bit++;
  return bit - from;
}
