/**
 * The inodes of one mounted ext volume, found through their group's descriptor: a listing reads
 * each entry's inode, files-diff then asks for the same files' blocks, and every path is resolved
 * from the root again. The inode table is read and kept a piece at a time (a folder's files mostly
 * sit side by side in it), and an inode is parsed from its piece each time it is asked for: a few
 * field reads, cheaper than keeping tens of thousands of parsed objects alive (which made V8 grow
 * its young generation to a hundred MiB). Bounded: 2 × PIECES_PER_GENERATION pieces and each
 * group's table place.
 */
import type { ChangedBytes, VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { checkBlock } from './ext-extents.ts';
import { checkInodeChecksum, parseInode, type ExtInode } from './ext-inodes.ts';
import { corrupt, groupDescriptorOffset, type ExtSuperblock } from './ext-superblock.ts';

const PIECE_BYTES = 16384;
/** 1 MiB of inode table per generation (4096 inodes of 256 bytes). */
const PIECES_PER_GENERATION = 64;
const MAX_CACHED_GROUPS = 65536;

export class ExtInodeTable {
  private readonly volume: VolumeBytes;
  private readonly superblock: ExtSuperblock;
  /** Volume offset of a piece of an inode table → its bytes. */
  private readonly pieces = new GenerationalCache<number, Uint8Array>(PIECES_PER_GENERATION);
  /** Group → the first block of its inode table. */
  private readonly tables = new Map<number, number>();
  /** A piece's inodes whose checksum held (a bit each): files-diff asks for the same inode several times. */
  private readonly verified = new WeakMap<Uint8Array, Uint8Array>();

  constructor(volume: VolumeBytes, superblock: ExtSuperblock) {
    this.volume = volume;
    this.superblock = superblock;
  }

  /** The inode when its piece of the table was read already (no wait), else undefined. */
  cached(inodeNumber: number): ExtInode | undefined {
    const { superblock } = this;
    if (!Number.isSafeInteger(inodeNumber) || inodeNumber < 1 || inodeNumber > superblock.inodesCount) return undefined;
    const group = Math.floor((inodeNumber - 1) / superblock.inodesPerGroup);
    const tableBlock = this.tables.get(group);
    if (tableBlock === undefined) return undefined;
    const withinTable = ((inodeNumber - 1) % superblock.inodesPerGroup) * superblock.inodeBytes;
    const piece = this.pieces.get(tableBlock * superblock.blockBytes + withinTable - (withinTable % PIECE_BYTES));
    const at = withinTable % PIECE_BYTES;
    if (piece === undefined || at + superblock.inodeBytes > piece.length) return undefined;
    this.checkOnce(piece, inodeNumber, at);
    return parseInode(piece, inodeNumber, at, superblock.inodeBytes);
  }

  async inode(inodeNumber: number): Promise<ExtInode> {
    const cached = this.cached(inodeNumber);
    if (cached !== undefined) return cached;
    const { superblock } = this;
    if (!Number.isSafeInteger(inodeNumber) || inodeNumber < 1 || inodeNumber > superblock.inodesCount) throw corrupt(`inode ${inodeNumber} is out of range`);
    const group = Math.floor((inodeNumber - 1) / superblock.inodesPerGroup);
    const within = ((inodeNumber - 1) % superblock.inodesPerGroup) * superblock.inodeBytes;
    const tableStart = (this.tables.get(group) ?? (await this.tableBlock(group))) * superblock.blockBytes;
    const pieceStart = tableStart + within - (within % PIECE_BYTES);
    const piece = this.pieces.get(pieceStart) ?? (await this.readPiece(pieceStart, tableStart + superblock.inodesPerGroup * superblock.inodeBytes));
    const at = tableStart + within - pieceStart;
    if (at + superblock.inodeBytes <= piece.length) {
      this.checkOnce(piece, inodeNumber, at);
      return parseInode(piece, inodeNumber, at, superblock.inodeBytes);
    }
    // The piece was cut short by the volume's end: the inode alone, refused as before if it lies past it.
    const bytes = new Uint8Array(superblock.inodeBytes);
    await this.volume.read(bytes, tableStart + within);
    checkInodeChecksum(bytes, inodeNumber, 0, superblock.inodeBytes, superblock.checksumSeed);
    return parseInode(bytes, inodeNumber);
  }

  /** checkInodeChecksum, once per inode of a piece kept (a failure is not remembered: it throws each time). */
  private checkOnce(piece: Uint8Array, inodeNumber: number, at: number): void {
    const { inodeBytes, checksumSeed } = this.superblock;
    if (checksumSeed === null) return;
    const index = at / inodeBytes;
    let bits = this.verified.get(piece);
    if (bits !== undefined && ((bits[index >> 3] as number) & (1 << (index & 7))) !== 0) return;
    checkInodeChecksum(piece, inodeNumber, at, inodeBytes, checksumSeed);
    if (bits === undefined) {
      bits = new Uint8Array(Math.ceil(piece.length / inodeBytes / 8));
      this.verified.set(piece, bits);
    }
    bits[index >> 3] = (bits[index >> 3] as number) | (1 << (index & 7));
  }

  /**
   * Whether inode `inodeNumber` may read otherwise in `earlier`, the same volume's inode table in
   * another state with the same geometry: its group's inode table lies elsewhere there, or its
   * bytes differ by `changed`.
   */
  async placeChanged(inodeNumber: number, changed: ChangedBytes, earlier: ExtInodeTable): Promise<boolean> {
    const now = this.placeChangedNow(inodeNumber, changed, earlier);
    if (now !== undefined) return now;
    const { superblock } = this;
    const group = Math.floor((inodeNumber - 1) / superblock.inodesPerGroup);
    const tableBlock = this.tables.get(group) ?? (await this.tableBlock(group));
    if (tableBlock !== (earlier.tables.get(group) ?? (await earlier.tableBlock(group)))) return true;
    return changed(tableBlock * superblock.blockBytes + ((inodeNumber - 1) % superblock.inodesPerGroup) * superblock.inodeBytes, superblock.inodeBytes);
  }

  /** placeChanged without waiting, when both states' table places for the group were read already; else undefined. */
  placeChangedNow(inodeNumber: number, changed: ChangedBytes, earlier: ExtInodeTable): boolean | undefined {
    const { superblock } = this;
    const group = Math.floor((inodeNumber - 1) / superblock.inodesPerGroup);
    const tableBlock = this.tables.get(group);
    const earlierBlock = earlier.tables.get(group);
    if (tableBlock === undefined || earlierBlock === undefined) return undefined;
    if (tableBlock !== earlierBlock) return true;
    return changed(tableBlock * superblock.blockBytes + ((inodeNumber - 1) % superblock.inodesPerGroup) * superblock.inodeBytes, superblock.inodeBytes);
  }

  private async readPiece(pieceStart: number, tableEnd: number): Promise<Uint8Array> {
    const piece = new Uint8Array(Math.max(0, Math.min(PIECE_BYTES, tableEnd - pieceStart, this.volume.length - pieceStart)));
    await this.volume.read(piece, pieceStart);
    this.pieces.set(pieceStart, piece);
    return piece;
  }

  private async tableBlock(group: number): Promise<number> {
    const { superblock } = this;
    const descriptor = new Uint8Array(superblock.groupDescriptorBytes);
    await this.volume.read(descriptor, groupDescriptorOffset(superblock, group));
    const view = new DataView(descriptor.buffer);
    const tableBlock = view.getUint32(8, true) + (superblock.is64Bit && superblock.groupDescriptorBytes >= 64 ? view.getUint32(0x28, true) * 2 ** 32 : 0);
    checkBlock(superblock, tableBlock);
    if (this.tables.size >= MAX_CACHED_GROUPS) this.tables.clear();
    this.tables.set(group, tableBlock);
    return tableBlock;
  }
}
