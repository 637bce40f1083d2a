/**
 * An XFS volume as the kernel would mount it: a volume the guest had mounted when the state was
 * saved (a snapshot of a running VM) keeps its latest metadata changes in its log until they are
 * written in place; read as it lies, files created last may be missing, a folder may name an inode
 * not yet written. The kernel replays the log before anything is read; so does this, in memory
 * (xfs-log-records.ts finds and checks the records, xfs-log-transactions.ts puts the transactions
 * back together, xfs-log-replay.ts replays them). The volume is never written.
 *
 * A log whose last record is an unmount record is clean: nothing to replay. A log that cannot be
 * replayed (damaged, or holding what this code does not replay) leaves the volume as it lies, with
 * a caution saying why.
 */
import { Qcow2Error } from '../../errors.ts';
import type { VolumeBytes } from '../filesystem.ts';
import { uint32 } from './xfs-bytes.ts';
import { BASIC_BLOCK, findHead, headerBlocks, LogArea, lastRecordBefore, walkRecords } from './xfs-log-records.ts';
import { overlaySectors, replayTransactions } from './xfs-log-replay.ts';
import { committedTransactions } from './xfs-log-transactions.ts';
import type { XfsMapChange } from './xfs-map-changes.ts';
import type { XfsSuperblock } from './xfs-superblock.ts';

/** xlog_op_header's flags byte: XLOG_UNMOUNT_TRANS. */
const UNMOUNT_FLAG = 0x20;
/** sb_features_log_incompat this replay knows: logged extended attributes, logged file-range exchanges. */
const KNOWN_LOG_INCOMPAT = 0x1 | 0x2;
/** The most of a log replayed (a log is at most 2 GiB; what it holds is kept in memory while replayed). */
const MAX_REPLAYED_BYTES = 512 * 1024 * 1024;
/** A walk that stops this close to the head met a write the guest never finished (log buffers in flight: 8 of at most 256 KiB): the kernel drops it too. */
const TORN_HEAD_BYTES = 8 * 256 * 1024 + 8 * 8 * BASIC_BLOCK;
/** How many times the head moves back over a torn record before the log is taken as damaged. */
const MAX_HEAD_MOVES = 16;

/** What replaying the log gives, apart from the volume it was read from (replay-memo.ts keeps it): never changed once made. */
export interface XfsLogReplay {
  /** The sectors replay changed, by number, and what they hold after it. */
  sectors: ReadonlyMap<number, Uint8Array>;
  /** The 512-byte sectors replay changed, ascending. */
  replayedSectors: readonly number[];
  /** Block-map changes the log left to be finished, by inode, each inode's in log order. */
  mapChanges: ReadonlyMap<number, readonly XfsMapChange[]>;
  caution: string | null;
}

export interface XfsVolumeState extends XfsLogReplay {
  /** The volume with the log replayed over it (the volume itself when there was nothing to replay). */
  volume: VolumeBytes;
}

const notReplayed = (reason: string): string =>
  `XFS had this volume mounted when the state was saved, and Cowbell could not replay its log (${reason}): changes the guest made last may be missing`;

/** The volume as recovery leaves it, and a caution where the log could not be replayed. */
export async function recoverXfsLog(volume: VolumeBytes, superblock: XfsSuperblock): Promise<XfsVolumeState> {
  return withXfsReplay(volume, await replayXfsLog(volume, superblock));
}

/** `volume` with `replay` over it. */
export function withXfsReplay(volume: VolumeBytes, replay: XfsLogReplay): XfsVolumeState {
  return { ...replay, volume: replay.sectors.size === 0 ? volume : replayedVolume(volume, replay.sectors) };
}

/** The approximate bytes a replay holds (replay-memo.ts). */
export function xfsReplayBytes(replay: XfsLogReplay): number {
  let changes = 0;
  for (const list of replay.mapChanges.values()) changes += list.length;
  return replay.sectors.size * (BASIC_BLOCK + 64) + replay.replayedSectors.length * 8 + changes * 128;
}

/** What recovery changes in the volume, and a caution where the log could not be replayed. */
export async function replayXfsLog(volume: VolumeBytes, superblock: XfsSuperblock): Promise<XfsLogReplay> {
  const asItLies = (caution: string | null): XfsLogReplay => ({ sectors: new Map(), replayedSectors: [], mapChanges: new Map(), caution });
  if (superblock.log === null) return asItLies('The XFS log is on another device, which Cowbell cannot read: whether the guest shut the volume down cleanly is not known');
  const log = new LogArea(volume, superblock.log.firstBlock * superblock.blockBytes, (superblock.log.blocks * superblock.blockBytes) / BASIC_BLOCK);
  let head = await findHead(log);
  try {
    // A torn write near the head moves the head back to it, and the tail is the one the record before it names (xlog_verify_head).
    for (let attempt = 0; ; attempt++) {
      const last = await lastRecordBefore(log, head);
      if (last === null) return asItLies(notReplayed('no record found before its head'));
      // A record that does not end exactly at the head was not completely written: the head is its start.
      const span = headerBlocks(last.header) + Math.ceil(uint32(last.header, 12) / BASIC_BLOCK);
      if ((((head - last.block) % log.blocks) + log.blocks) % log.blocks !== span % log.blocks && attempt < MAX_HEAD_MOVES) {
        head = last.block;
        continue;
      }
      if (await isUnmountRecord(log, last.block, last.header)) return asItLies(null);
      const unknownFeatures = superblock.logIncompatible & ~KNOWN_LOG_INCOMPAT;
      if (unknownFeatures !== 0) return asItLies(notReplayed(`it uses log features 0x${unknownFeatures.toString(16)}`));
      const tail = { cycle: uint32(last.header, 24), block: uint32(last.header, 28) };
      if (tail.block >= log.blocks) return asItLies(notReplayed(`its tail lies at block ${tail.block}, past its end`));
      const activeBlocks = (((head - tail.block) % log.blocks) + log.blocks) % log.blocks;
      if (activeBlocks * BASIC_BLOCK > MAX_REPLAYED_BYTES) return asItLies(notReplayed(`${Math.round((activeBlocks * BASIC_BLOCK) / 2 ** 20)} MiB of it to replay`));
      const walk = await walkRecords(log, tail, head, superblock.uuid, superblock.version === 5);
      let caution: string | null = null;
      if (walk.stoppedAt !== null) {
        const left = (((head - walk.stoppedAt.block) % log.blocks) + log.blocks) % log.blocks;
        if (left * BASIC_BLOCK <= TORN_HEAD_BYTES && attempt < MAX_HEAD_MOVES) {
          head = walk.stoppedAt.block;
          continue;
        }
        caution = `XFS had this volume mounted when the state was saved; Cowbell replayed its log up to block ${walk.stoppedAt.block} (${walk.stoppedAt.reason}), so changes the guest made after that may be missing`;
      }
      const transactions = committedTransactions(walk.records, walk.littleEndian);
      const { sectors, mapChanges } = await replayTransactions(volume, superblock, transactions, walk.littleEndian);
      const byInode = new Map<number, XfsMapChange[]>();
      for (const change of mapChanges) byInode.set(change.inode, [...(byInode.get(change.inode) ?? []), change]);
      return { sectors, replayedSectors: [...sectors.keys()].sort((a, b) => a - b), mapChanges: byInode, caution };
    }
  } catch (error) {
    if (error instanceof Qcow2Error && (error.code === 'FILESYSTEM_CORRUPT' || error.code === 'FILESYSTEM_UNSUPPORTED')) return asItLies(notReplayed(reasonOf(error.message)));
    throw error;
  }
}

/** Whether the record at `block` is a lone unmount operation (a clean shutdown wrote it last). */
async function isUnmountRecord(log: LogArea, block: number, header: Uint8Array): Promise<boolean> {
  const data = await log.read(block + headerBlocks(header), 1);
  // The op header: transaction id (its first word given over to the cycle on disk), length, client, then flags.
  return uint32(header, 40) === 1 && ((data[9] as number) & UNMOUNT_FLAG) !== 0;
}

/** The volume's bytes with the replayed sectors over them. */
function replayedVolume(volume: VolumeBytes, sectors: ReadonlyMap<number, Uint8Array>): VolumeBytes {
  return {
    length: volume.length,
    async read(buffer, offset) {
      await volume.read(buffer, offset);
      overlaySectors(sectors, buffer, offset);
    },
  };
}

/** The detail of a typed error from the log's reading ("The XFS filesystem is damaged: …" without its opening). */
function reasonOf(message: string): string {
  const colon = message.indexOf(': ');
  return colon < 0 ? message : message.slice(colon + 2);
}
