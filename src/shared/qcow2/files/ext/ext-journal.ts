/**
 * An ext3/4 journal's committed transactions, replayed in memory (the volume is never written).
 *
 * A filesystem in use when its snapshot was taken (needs_recovery) keeps its latest changes in the
 * journal (jbd2) until they are written home: read as they lie, its folders and files are the
 * ones of some seconds earlier — new files missing, a deleted file still listed over blocks another
 * file now holds. The kernel and e2fsck replay the journal before anything is read; so does this:
 * the log is walked from its start (the journal superblock's s_start and s_sequence) while blocks
 * carry the next expected sequence, every complete transaction (a commit block closes it) gives
 * its blocks' new contents, a later transaction's win, and blocks revoked by a transaction of the
 * same or a later sequence are not replayed (the kernel's recovery.c passes: scan, revoke, replay).
 *
 * Facts from the kernel's Documentation/filesystems/ext4/journal.rst: every journal field is
 * big-endian; block types 1 descriptor, 2 commit, 3/4 superblock v1/v2, 5 revoke; a descriptor's
 * tags name, in order, the filesystem blocks of the journal blocks that follow it.
 */
import type { VolumeBytes } from '../filesystem.ts';
import { readMapped, type FileBlockMap } from '../block-map.ts';
import { extFileBlockMap } from './ext-extents.ts';
import type { ExtInodeTable } from './ext-inode-table.ts';
import { crc32c } from '../crc32c.ts';
import { corrupt, type ExtSuperblock } from './ext-superblock.ts';

const JOURNAL_MAGIC = 0xc03b3998;
const DESCRIPTOR = 1;
const COMMIT = 2;
const SUPERBLOCK_V1 = 3;
const SUPERBLOCK_V2 = 4;
const REVOKE = 5;

const INCOMPAT_64BIT = 0x2;
const INCOMPAT_CSUM_V2 = 0x8;
const INCOMPAT_CSUM_V3 = 0x10;
const INCOMPAT_FAST_COMMIT = 0x20;
/** jbd2's JBD2_DEFAULT_FAST_COMMIT_BLOCKS, where the superblock gives no count. */
const DEFAULT_FAST_COMMIT_BLOCKS = 256;

const FLAG_ESCAPE = 0x1;
const FLAG_SAME_UUID = 0x2;
const FLAG_LAST_TAG = 0x8;

/** Journals are at most 2^30 bytes in practice (mke2fs makes up to 1 GiB): a larger one is damage, not read into memory. */
const MAX_JOURNAL_BYTES = 2 ** 31;
/**
 * The replayed blocks are held in memory: the kernel checkpoints long before a journal fills, so
 * more than this waiting is damage (or a hostile image), refused rather than allocated.
 */
const MAX_REPLAYED_BYTES = 512 * 2 ** 20;

export interface ReplayedJournal {
  /** Filesystem block → its content as the journal's last committed transaction left it. */
  blocks: Map<number, Uint8Array>;
  /** Committed transactions replayed. */
  transactions: number;
  /** What the replay could not do that the kernel would (fast-commit records), for the volume's caution; null when nothing. */
  caution: string | null;
}

/** The approximate bytes a replay holds (replay-memo.ts). */
export function journalBytes(journal: ReplayedJournal): number {
  let bytes = 0;
  for (const block of journal.blocks.values()) bytes += block.byteLength + 64;
  return bytes;
}

/** The journal's committed changes of a filesystem that needs recovery (an empty map when its log is empty). */
export async function replayJournal(volume: VolumeBytes, superblock: ExtSuperblock, inodes: ExtInodeTable, journalInode: number): Promise<ReplayedJournal> {
  const inode = await inodes.inode(journalInode);
  const map = await extFileBlockMap(volume, superblock, inode);
  if (map === null) throw corrupt(`its journal (inode ${journalInode}) holds no blocks`);
  const log = new JournalFile(volume, map, superblock.blockBytes, inode.size);
  const header = await log.block(0);
  if (uint32(header, 0) !== JOURNAL_MAGIC || (uint32(header, 4) !== SUPERBLOCK_V1 && uint32(header, 4) !== SUPERBLOCK_V2)) throw corrupt('its journal has no journal superblock');
  const journalBlockBytes = uint32(header, 12);
  if (journalBlockBytes !== superblock.blockBytes) throw corrupt(`its journal's blocks are ${journalBlockBytes} bytes, the filesystem's ${superblock.blockBytes}`);
  const first = uint32(header, 20);
  let sequence = uint32(header, 24);
  const start = uint32(header, 28);
  const incompat = uint32(header, 4) === SUPERBLOCK_V2 ? uint32(header, 40) : 0;
  // With fast commits the log wraps before the fast-commit area at the journal's end. Fast-commit
  // records themselves are not replayed (mke2fs does not enable the feature by default).
  const fastCommitBlocks = (incompat & INCOMPAT_FAST_COMMIT) !== 0 ? uint32(header, 0x54) || DEFAULT_FAST_COMMIT_BLOCKS : 0;
  const maxLength = Math.min(uint32(header, 16), log.blockCount) - fastCommitBlocks;
  const blocks = new Map<number, Uint8Array>();
  if (start === 0) return { blocks, transactions: 0, caution: null };
  if (first < 1 || first >= maxLength || start < first || start >= maxLength) throw corrupt(`its journal's log starts at block ${start} of ${maxLength}`);
  const format = tagFormat(incompat);
  // Checksums v2/v3 (seeded by the journal's UUID) tell a block of this journal from a stale one
  // left by an earlier filesystem, and a torn or damaged one. As the kernel's scan: a descriptor or
  // revoke block that fails is judged at its transaction's commit block — committed earlier than
  // the last good transaction, it is stale (the log ends there, nothing wrong); otherwise the
  // transaction is damaged, as is one whose commit block fails. The kernel then refuses to mount;
  // e2fsck replays the transactions before it, and so does this, with a caution. A data block that
  // fails is skipped (an older copy of its block read), also with a caution.
  const checksums = (incompat & (INCOMPAT_CSUM_V2 | INCOMPAT_CSUM_V3)) !== 0;
  const seed = crc32c(header.subarray(0x30, 0x40));
  const tailHolds = (block: Uint8Array): boolean => !checksums || uint32(block, block.length - 4) === crc32c(withZeroed(block, block.length - 4, 4), seed);
  const next = (block: number): number => (block + 1 >= maxLength ? first : block + 1);

  // Scan: the transactions that end in a commit block, each as the journal blocks it brings home.
  interface Transaction {
    sequence: number;
    writes: { journalBlock: number; home: number; escaped: boolean; checksum: number }[];
    revoked: number[];
  }
  const committed: Transaction[] = [];
  let current: Transaction = { sequence, writes: [], revoked: [] };
  let position = start;
  /** The last good transaction's commit time (h_commit_sec), and whether this one had a block that failed its checksum. */
  let lastCommitTime = 0n;
  let failedBlock = false;
  /** The transaction whose blocks failed their checksums, where the log is damaged (not stale). */
  let damagedTransaction: number | null = null;
  // Each journal block is visited at most once: a log that runs round to where it began ends there.
  for (let visited = 0; visited < maxLength; visited++) {
    const block = await log.block(position);
    if (uint32(block, 0) !== JOURNAL_MAGIC || uint32(block, 8) !== sequence) break;
    const type = uint32(block, 4);
    if (type === DESCRIPTOR) {
      const tags = readTags(block, format, superblock.blockBytes);
      if (!tailHolds(block)) {
        // Judged at the commit block: its data blocks are passed over.
        failedBlock = true;
        for (let index = 0; index < tags.length && visited < maxLength; index++, visited++) position = next(position);
        position = next(position);
        continue;
      }
      for (const tag of tags) {
        position = next(position);
        visited++;
        current.writes.push({ journalBlock: position, home: tag.home, escaped: tag.escaped, checksum: tag.checksum });
      }
      position = next(position);
      continue;
    }
    if (type === REVOKE) {
      if (!tailHolds(block)) {
        failedBlock = true;
        position = next(position);
        continue;
      }
      current.revoked.push(...readRevoked(block, incompat, superblock.blockBytes));
      position = next(position);
      continue;
    }
    if (type === COMMIT) {
      const commitTime = new DataView(block.buffer, block.byteOffset, block.length).getBigUint64(0x30);
      // The commit block's own checksum (h_chksum[0], the field zeroed while it is computed).
      if (failedBlock || (checksums && uint32(block, 16) !== crc32c(withZeroed(block, 16, 4), seed))) {
        if (commitTime >= lastCommitTime) damagedTransaction = sequence;
        break;
      }
      lastCommitTime = commitTime;
      committed.push(current);
      sequence = (sequence + 1) >>> 0;
      current = { sequence, writes: [], revoked: [] };
      position = next(position);
      continue;
    }
    break;
  }

  // Revoke: a block revoked by transaction T is not replayed from T or any earlier transaction.
  const revokedUpTo = new Map<number, number>();
  committed.forEach((transaction, index) => {
    for (const home of transaction.revoked) revokedUpTo.set(home, index);
  });
  // Replay: the last good write of a block wins, so the writes are taken newest first and a block
  // already had is not read again (the superblock and bitmaps are in nearly every transaction).
  let failedData: number | null = null;
  for (let index = committed.length - 1; index >= 0; index--) {
    const transaction = committed[index] as Transaction;
    for (let at = transaction.writes.length - 1; at >= 0; at--) {
      const write = transaction.writes[at] as Transaction['writes'][number];
      if (blocks.has(write.home) || (revokedUpTo.get(write.home) ?? -1) >= index) continue;
      if (write.home >= superblock.blocksCount) throw corrupt(`its journal writes block ${write.home}, past the filesystem's ${superblock.blocksCount}`);
      if ((blocks.size + 1) * superblock.blockBytes > MAX_REPLAYED_BYTES) throw corrupt(`its journal holds more than ${MAX_REPLAYED_BYTES / 2 ** 20} MiB of changes to replay`);
      const content = await log.block(write.journalBlock);
      // A data block failing its tag's checksum is skipped, as the kernel skips it (it is not what was committed).
      if (checksums && !dataBlockHolds(content, transaction.sequence, write.checksum, seed, (incompat & INCOMPAT_CSUM_V3) !== 0)) {
        failedData ??= transaction.sequence;
        continue;
      }
      // An escaped block began with the journal's magic, which the journal kept as zeros.
      if (write.escaped) new DataView(content.buffer).setUint32(0, JOURNAL_MAGIC);
      blocks.set(write.home, content);
    }
  }
  const cautions: string[] = [];
  if (damagedTransaction !== null) {
    cautions.push(`its journal's transaction ${damagedTransaction} fails its checksum (Linux refuses to mount the volume so; e2fsck replays what comes before it): its changes and any after it are not replayed, so what is read may be older than the guest left it`);
  }
  if (failedData !== null) {
    cautions.push(`a block of its journal's transaction ${failedData} fails its checksum (Linux refuses to mount the volume so): an older copy of that block is read, so what is read may mix two moments`);
  }
  // jbd2's fast-commit area begins one block past the log's end (j_fc_first = j_last + 1); its
  // records are the transaction after the last full commit's (`sequence` now), else stale.
  if (fastCommitBlocks > 1 && (await hasFastCommits(log, maxLength + 1, fastCommitBlocks - 1, sequence))) {
    cautions.push('its journal holds fast-commit records (changes a program saved with fsync since the last full commit), which Cowbell does not replay: those changes may be missing');
  }
  return { blocks, transactions: committed.length, caution: cautions.length === 0 ? null : cautions.join('; ') };
}

/**
 * Whether the fast-commit area holds records to replay: it begins with a head (EXT4_FC_TAG_HEAD, 9:
 * jbd2's tags are little-endian, a 16-bit tag and length, then the head's features and
 * transaction id) naming the transaction after the last full commit; a head naming another is
 * left from before it, and the kernel replays nothing of it.
 */
async function hasFastCommits(log: JournalFile, first: number, count: number, expectedTransaction: number): Promise<boolean> {
  if (first + count > log.blockCount) return false;
  const block = await log.block(first);
  const tag = (block[0] as number) | ((block[1] as number) << 8);
  const transaction = ((block[8] as number) | ((block[9] as number) << 8) | ((block[10] as number) << 16) | ((block[11] as number) << 24)) >>> 0;
  return tag === 9 && transaction === expectedTransaction;
}

/** A copy of `block` with `length` bytes at `at` zeroed (where a checksum sits while it is computed). */
function withZeroed(block: Uint8Array, at: number, length: number): Uint8Array {
  const copy = block.slice();
  copy.fill(0, at, at + length);
  return copy;
}

/** A data block's checksum as its tag keeps it: crc32c of the sequence (big-endian) then the block; v2 keeps the low 16 bits. */
function dataBlockHolds(content: Uint8Array, sequence: number, expected: number, seed: number, v3: boolean): boolean {
  const sequenceBytes = new Uint8Array(4);
  new DataView(sequenceBytes.buffer).setUint32(0, sequence);
  const checksum = crc32c(content, crc32c(sequenceBytes, seed));
  return v3 ? checksum === expected : (checksum & 0xffff) === expected;
}

/**
 * The volume with the journal's blocks read in place of their home locations: what the filesystem
 * reads once its journal is replayed.
 */
export function journaledVolume(volume: VolumeBytes, blocks: ReadonlyMap<number, Uint8Array>, blockBytes: number): VolumeBytes {
  return {
    length: volume.length,
    async read(buffer, offset) {
      await volume.read(buffer, offset);
      const end = offset + buffer.length;
      for (let block = Math.floor(offset / blockBytes); block * blockBytes < end; block++) {
        const content = blocks.get(block);
        if (content === undefined) continue;
        const blockStart = block * blockBytes;
        const from = Math.max(offset, blockStart);
        const to = Math.min(end, blockStart + blockBytes);
        buffer.set(content.subarray(from - blockStart, to - blockStart), from - offset);
      }
    },
  };
}

interface TagFormat {
  bytes: number;
  is64Bit: boolean;
  /** csum v3's tag3: 32-bit flags at 4; the others' 16-bit flags at 6. */
  wideFlags: boolean;
  /** csum v2/v3 descriptors end in a 4-byte checksum tail. */
  tail: number;
}

function tagFormat(incompat: number): TagFormat {
  const is64Bit = (incompat & INCOMPAT_64BIT) !== 0;
  if ((incompat & INCOMPAT_CSUM_V3) !== 0) return { bytes: 16, is64Bit, wideFlags: true, tail: 4 };
  const csumV2 = (incompat & INCOMPAT_CSUM_V2) !== 0;
  // journal_block_tag_t is 12 bytes (with t_blocknr_high); csum v2 adds 2; without 64bit the high half is not there.
  return { bytes: 12 + (csumV2 ? 2 : 0) - (is64Bit ? 0 : 4), is64Bit, wideFlags: false, tail: csumV2 ? 4 : 0 };
}

function readTags(block: Uint8Array, format: TagFormat, blockBytes: number): { home: number; escaped: boolean; checksum: number }[] {
  const tags: { home: number; escaped: boolean; checksum: number }[] = [];
  const end = blockBytes - format.tail;
  let at = 12;
  while (at + format.bytes <= end) {
    const low = uint32(block, at);
    const flags = format.wideFlags ? uint32(block, at + 4) : uint16(block, at + 6);
    const high = format.is64Bit ? uint32(block, at + 8) : 0;
    // tag3 keeps a 32-bit checksum at 12; the older tag a 16-bit one at 4.
    const checksum = format.wideFlags ? uint32(block, at + 12) : uint16(block, at + 4);
    tags.push({ home: high * 2 ** 32 + low, escaped: (flags & FLAG_ESCAPE) !== 0, checksum });
    at += format.bytes;
    if ((flags & FLAG_SAME_UUID) === 0) at += 16;
    if ((flags & FLAG_LAST_TAG) !== 0) break;
  }
  return tags;
}

function readRevoked(block: Uint8Array, incompat: number, blockBytes: number): number[] {
  const entryBytes = (incompat & INCOMPAT_64BIT) !== 0 ? 8 : 4;
  const used = Math.min(uint32(block, 12), blockBytes);
  const revoked: number[] = [];
  for (let at = 16; at + entryBytes <= used; at += entryBytes) revoked.push(entryBytes === 8 ? uint32(block, at) * 2 ** 32 + uint32(block, at + 4) : uint32(block, at));
  return revoked;
}

/** The journal inode's blocks by their place in the log. */
class JournalFile {
  readonly blockCount: number;
  private readonly volume: VolumeBytes;
  private readonly map: FileBlockMap;
  private readonly blockBytes: number;

  constructor(volume: VolumeBytes, map: FileBlockMap, blockBytes: number, size: number) {
    if (size > MAX_JOURNAL_BYTES) throw corrupt(`its journal claims ${size} bytes`);
    this.volume = volume;
    this.map = map;
    this.blockBytes = blockBytes;
    this.blockCount = Math.floor(size / blockBytes);
  }

  async block(index: number): Promise<Uint8Array> {
    const bytes = new Uint8Array(this.blockBytes);
    await readMapped(this.volume, this.map, bytes, index * this.blockBytes);
    return bytes;
  }
}

function uint32(bytes: Uint8Array, at: number): number {
  return (((bytes[at] as number) << 24) | ((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number)) >>> 0;
}

function uint16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) << 8) | (bytes[at + 1] as number);
}
