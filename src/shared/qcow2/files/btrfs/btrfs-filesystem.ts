/**
 * btrfs (Fedora's and openSUSE's default), read-only, by Cowbell's own reader: the superblock and
 * its system chunks first (btrfs-superblock.ts), then the chunk tree (every logical address mapped
 * onto this device: btrfs-chunks.ts), the root tree (where each subvolume's tree is), and the
 * subvolumes' trees (btrfs-tree.ts) for inodes, folder entries and file extents (btrfs-items.ts),
 * compressed ones decompressed (btrfs-compression.ts). The volume's top level is shown, as
 * `mount -o subvolid=5` shows it: every subvolume (Fedora's "root" and "home", snapper's snapshots)
 * is a folder. btrfs is copy-on-write: the last committed state is whole even in a snapshot of a
 * running guest, and the files fsync'd since (a log tree) are read as a mount replays them
 * (btrfs-log.ts); a log that cannot be read leaves a caution. Nothing is ever written.
 */
import { Qcow2Error } from '../../errors.ts';
import type { GuestFileEntry } from '../../model.ts';
import { appendRange } from '../block-map.ts';
import type { ByteRange, FilesystemReader, GuestFilesystem, VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { decodeGuestName } from '../linux-names.ts';
import { joinPath, pathParts } from '../paths.ts';
import { byName, damagedEntry, posixEntryWithTarget, S_IFDIR, S_IFMT, S_IFREG } from '../posix-entry.ts';
import { corrupt, type BtrfsKey } from './btrfs-bytes.ts';
import { ChunkMap, parseChunk } from './btrfs-chunks.ts';
import { decompressExtent } from './btrfs-compression.ts';
import {
  COMPRESSION_NONE,
  DIR_INDEX,
  EXTENT_DATA,
  FS_TREE,
  INODE_ITEM,
  parseExtent,
  parseFolderEntries,
  parseInode,
  parseRootItem,
  ROOT_FOLDER_INODE,
  ROOT_ITEM,
  ROOT_REF,
  type BtrfsInode,
  type FileExtent,
} from './btrfs-items.ts';
import { btrfsLogBytes, readBtrfsLog, replayedFolder, type SubvolumeLog } from './btrfs-log.ts';
import { NO_IDENTITY, rememberedReplay, type VolumeOpenContext } from '../replay-memo.ts';
import { hasBtrfsMagic, readBtrfsSuperblock, type BtrfsSuperblock } from './btrfs-superblock.ts';
import { MAX_KEY, TreeReader, type LeafItem, type TreeRoot } from './btrfs-tree.ts';

const CHUNK_TREE_OBJECT = 256n;
const CHUNK_ITEM = 228;
const MAX_CHUNKS = 1 << 20;
const CACHED_FOLDERS = 16;
/** Linux's longest symlink target. */
const MAX_TARGET_BYTES = 4095;
/** A file's extent (its item's bytes) is at most 128 MiB long. */
const MAX_EXTENT_BYTES = 128 * 1024 * 1024;
/** A file's extents are looked up this far ahead of a read. */
const READ_WINDOW_BYTES = 64 * 1024 * 1024;
/** A compressed extent holds at most 128 KiB once decompressed; more is damage. */
const MAX_DECOMPRESSED_BYTES = 128 * 1024;

export const BTRFS_READER: FilesystemReader = {
  kind: 'btrfs',
  probe: hasBtrfsMagic,
  async open(volume: VolumeBytes, context: VolumeOpenContext = NO_IDENTITY): Promise<GuestFilesystem> {
    const superblock = await readBtrfsSuperblock(volume);
    const chunks = new ChunkMap(superblock.deviceId, volume.length, superblock.systemChunks);
    const trees = new TreeReader(volume, superblock, chunks);
    const chunkItems = await trees.items({ logical: superblock.chunkTree, level: superblock.chunkLevel }, { objectId: CHUNK_TREE_OBJECT, type: CHUNK_ITEM, offset: 0n }, { objectId: CHUNK_TREE_OBJECT, type: CHUNK_ITEM, offset: MAX_KEY.offset });
    if (chunkItems.length > MAX_CHUNKS) throw corrupt(`${chunkItems.length} chunks`);
    for (const item of chunkItems) chunks.add(parseChunk(item.data, item.key.offset));
    if (superblock.logTree === 0) return new BtrfsFilesystem(volume, superblock, trees, null, null);
    const { log, problem } = await rememberedReplay(context, 'btrfs-log', () => loggedChanges(trees, superblock), (read) => (read.log === null ? 256 : btrfsLogBytes(read.log)));
    return new BtrfsFilesystem(volume, superblock, trees, log, problem);
  },
};

/** The log tree's changes, or why they cannot be read (a damaged log leaves the last commit as it lies). */
async function loggedChanges(trees: TreeReader, superblock: BtrfsSuperblock): Promise<{ log: Map<bigint, SubvolumeLog> | null; problem: string | null }> {
  try {
    return { log: await readBtrfsLog(trees, { logical: superblock.logTree, level: superblock.logLevel }), problem: null };
  } catch (error) {
    if (!(error instanceof Qcow2Error) || !error.code.startsWith('FILESYSTEM_')) throw error;
    return { log: null, problem: error.message };
  }
}

/** The parts of `extent` that none of `over` covers (an inline extent covered in part goes whole, as replay drops it). */
function outside(extent: FileExtent, over: readonly FileExtent[]): FileExtent[] {
  let pieces: FileExtent[] = [extent];
  for (const cover of over) {
    const [from, to] = [cover.fileOffset, cover.fileOffset + cover.length];
    pieces = pieces.flatMap((piece) => {
      const [start, end] = [piece.fileOffset, piece.fileOffset + piece.length];
      if (to <= start || end <= from) return [piece];
      if (piece.kind === 'inline') return [];
      return [cut(piece, start, Math.min(end, from)), cut(piece, Math.max(start, to), end)].filter((part): part is FileExtent => part !== null);
    });
  }
  return pieces;
}

/** The bytes [from, to) of a regular or zero extent, or null where that is empty. */
function cut(extent: Exclude<FileExtent, { kind: 'inline' }>, from: number, to: number): FileExtent | null {
  if (to <= from) return null;
  if (extent.kind === 'zeros') return { kind: 'zeros', fileOffset: from, length: to - from };
  return { ...extent, fileOffset: from, length: to - from, within: extent.within + (from - extent.fileOffset) };
}

/** The keys of a file's EXTENT_DATA items whose starting offsets lie in [from, to). */
function extentKeys(node: Node, from: number, to: number): [BtrfsKey, BtrfsKey] {
  return [
    { objectId: node.inode, type: EXTENT_DATA, offset: BigInt(from) },
    { objectId: node.inode, type: EXTENT_DATA, offset: BigInt(Math.max(from, to - 1)) },
  ];
}

function refuseUnlessFile(node: Node, file: string): void {
  const type = node.item.mode & S_IFMT;
  if (type === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
  if (type !== S_IFREG) throw new Qcow2Error('NOT_A_FILE', `${file} is not a regular file`);
}

/** An inode of one subvolume's tree. */
interface Node {
  tree: bigint;
  root: TreeRoot;
  inode: bigint;
  item: BtrfsInode;
  /** A snapshot's placeholder for a subvolume that was inside the snapshotted one (an empty folder, as the kernel shows it). */
  placeholder?: true;
}

class BtrfsFilesystem implements GuestFilesystem {
  readonly kind = 'btrfs' as const;
  readonly label?: string;
  readonly caution?: string;
  private closed: Qcow2Error | null = null;
  private readonly folderNames = new GenerationalCache<string, Map<string, BtrfsKey>>(CACHED_FOLDERS / 2);
  private readonly treeRoots = new Map<bigint, TreeRoot>();
  /** The last window of a file's extents (a copy reads one file piece by piece). */
  private lastExtents: { key: string; from: number; to: number; extents: FileExtent[] } | null = null;
  private lastDecompressed: { logical: number; bytes: Uint8Array } | null = null;
  private readonly volume: VolumeBytes;
  private readonly superblock: BtrfsSuperblock;
  private readonly trees: TreeReader;

  /** The log tree's changes by subvolume (files fsync'd since the last commit), read as a mount replays them; null when there is none. */
  private readonly log: Map<bigint, SubvolumeLog> | null;

  constructor(volume: VolumeBytes, superblock: BtrfsSuperblock, trees: TreeReader, log: Map<bigint, SubvolumeLog> | null, logProblem: string | null) {
    this.volume = volume;
    this.superblock = superblock;
    this.trees = trees;
    this.log = log;
    if (superblock.label !== '') this.label = superblock.label;
    if (logProblem !== null) {
      this.caution = `The guest had files it had just saved (fsync'd) since btrfs's last commit, in a log tree that cannot be read (${logProblem}): they are read as last committed, so their latest changes may be missing`;
    }
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    const parts = pathParts(path);
    const folderPath = `/${parts.join('/')}`;
    const folder = await this.resolve(parts);
    const entries: GuestFileEntry[] = [];
    // In the order of their inodes, which is the tree's: a large folder's names come in another
    // order, and looked up that way each would read its leaf again (the node cache holds 128).
    const byInode = [...(await this.folderEntries(folder, folderPath))].sort(([, a], [, b]) => (a.objectId < b.objectId ? -1 : a.objectId > b.objectId ? 1 : 0));
    for (const [name, location] of byInode) {
      const path = joinPath(folderPath, name);
      try {
        entries.push(await this.entryOf(path, await this.child(folder, location, path), true));
      } catch (error) {
        entries.push(damagedEntry(name, path, error));
      }
    }
    return entries.sort(byName);
  }

  async stat(path: string): Promise<GuestFileEntry> {
    const parts = pathParts(path);
    return this.entryOf(`/${parts.join('/')}`, await this.resolve(parts), false);
  }

  async read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const node = await this.resolve(parts);
    const wanted = Math.max(0, Math.min(buffer.length, node.item.size - offset));
    const extents = await this.fileExtents(node, file, offset, offset + wanted);
    if (wanted === 0) return 0;
    const target = buffer.subarray(0, wanted);
    target.fill(0);
    const end = offset + wanted;
    for (const extent of extents) {
      const from = Math.max(offset, extent.fileOffset);
      const to = Math.min(end, extent.fileOffset + extent.length);
      if (to <= from || extent.kind === 'zeros') continue;
      const piece = target.subarray(from - offset, to - offset);
      if (extent.kind === 'inline') piece.set(this.inlineBytes(extent).subarray(from - extent.fileOffset, to - extent.fileOffset));
      else if (extent.compression === COMPRESSION_NONE) {
        const logical = extent.diskLogical + extent.within + (from - extent.fileOffset);
        await this.volume.read(piece, this.trees.chunks.physical(logical, piece.length));
      } else {
        const start = extent.within + (from - extent.fileOffset);
        piece.set((await this.decompressed(extent)).subarray(start, start + piece.length));
      }
    }
    return wanted;
  }

  async extents(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const node = await this.resolve(parts);
    if ((node.item.mode & S_IFMT) === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if ((node.item.mode & S_IFMT) !== S_IFREG) return [];
    const extents = await this.wholeFileExtents(node, file);
    if (extents === null) return null;
    const ranges: ByteRange[] = [];
    for (const extent of extents) {
      // Content kept in the tree's own leaf: where, this reader does not say (files-diff compares it by reading).
      if (extent.kind === 'inline') return null;
      if (extent.kind !== 'regular') continue;
      const [logical, length] = extent.compression === COMPRESSION_NONE ? [extent.diskLogical + extent.within, extent.length] : [extent.diskLogical, extent.diskBytes];
      ranges.push({ offset: this.trees.chunks.physical(logical, length), length });
    }
    return ranges;
  }

  async dataRanges(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const node = await this.resolve(parts);
    if ((node.item.mode & S_IFMT) !== S_IFREG) return null;
    const extents = await this.wholeFileExtents(node, file);
    if (extents === null) return null;
    const ranges: ByteRange[] = [];
    for (const extent of extents) {
      if (extent.kind !== 'zeros') appendRange(ranges, extent.fileOffset, extent.length);
    }
    return ranges;
  }

  async close(): Promise<void> {
    this.closed ??= new Qcow2Error('INVALID_ARGUMENT', 'The filesystem is closed');
  }

  /** The node at `path` from the top-level subvolume's root folder (symlinks on the way are not followed). */
  private async resolve(parts: readonly string[]): Promise<Node> {
    if (this.closed !== null) throw this.closed;
    let node = await this.node(FS_TREE, await this.treeRoot(FS_TREE), ROOT_FOLDER_INODE);
    const folders = [`${node.tree}:${node.inode}`];
    for (let index = 0; index < parts.length; index++) {
      const here = `/${parts.slice(0, index).join('/')}`;
      const location = (await this.folderEntries(node, here)).get(parts[index] as string);
      if (location === undefined) throw new Qcow2Error('NOT_FOUND', `/${parts.slice(0, index + 1).join('/')} does not exist`);
      node = await this.child(node, location, `/${parts.slice(0, index + 1).join('/')}`);
      if ((node.item.mode & S_IFMT) !== S_IFDIR) continue;
      const identity = `${node.tree}:${node.inode}`;
      if (folders.includes(identity)) throw corrupt(`/${parts.slice(0, index + 1).join('/')} is a folder inside itself`);
      folders.push(identity);
    }
    return node;
  }

  /** What a folder entry leads to: an inode of the same tree, or another subvolume's root folder. */
  private async child(folder: Node, location: BtrfsKey, path: string): Promise<Node> {
    if (location.type === INODE_ITEM) return this.node(folder.tree, folder.root, location.objectId);
    if (location.type !== ROOT_ITEM) throw corrupt(`${path} leads to an item of type ${location.type}`);
    const subvolume = location.objectId;
    // A subvolume is there when the root tree links it below this one; in a snapshot, one that was
    // inside the snapshotted subvolume is not, and shows as an empty folder.
    const linked = await this.trees.last(this.rootTreeRoot(), { objectId: folder.tree, type: ROOT_REF, offset: subvolume }, { objectId: folder.tree, type: ROOT_REF, offset: subvolume });
    // The kernel makes the placeholder up when it is looked up (its time is that moment's): it has none of its own.
    if (linked === undefined) return { tree: folder.tree, root: folder.root, inode: subvolume, item: { size: 0, mode: S_IFDIR | 0o755, mtimeMs: null }, placeholder: true };
    return this.node(subvolume, await this.treeRoot(subvolume), ROOT_FOLDER_INODE);
  }

  private async node(tree: bigint, root: TreeRoot, inode: bigint): Promise<Node> {
    const logged = this.log?.get(tree)?.inodes.get(inode);
    if (logged !== undefined) return { tree, root, inode, item: parseInode(logged, inode) };
    const key = { objectId: inode, type: INODE_ITEM, offset: 0n };
    const found = await this.trees.last(root, key, key);
    if (found === undefined) throw corrupt(`inode ${inode} of tree ${tree} is missing`);
    return { tree, root, inode, item: parseInode(found.data, inode) };
  }

  private rootTreeRoot(): TreeRoot {
    return { logical: this.superblock.rootTree, level: this.superblock.rootLevel };
  }

  private async treeRoot(tree: bigint): Promise<TreeRoot> {
    const known = this.treeRoots.get(tree);
    if (known !== undefined) return known;
    const item = await this.trees.last(this.rootTreeRoot(), { objectId: tree, type: ROOT_ITEM, offset: 0n }, { objectId: tree, type: ROOT_ITEM, offset: MAX_KEY.offset });
    if (item === undefined) throw corrupt(`the tree of subvolume ${tree} is missing`);
    const root = parseRootItem(item.data, tree);
    this.treeRoots.set(tree, root);
    return root;
  }

  private async folderEntries(folder: Node, path: string): Promise<Map<string, BtrfsKey>> {
    if ((folder.item.mode & S_IFMT) !== S_IFDIR) throw new Qcow2Error('NOT_A_DIRECTORY', `${path} is not a folder`);
    if (folder.placeholder) return new Map();
    const identity = `${folder.tree}:${folder.inode}`;
    const cached = this.folderNames.get(identity);
    if (cached !== undefined) return cached;
    const items = await this.trees.items(folder.root, { objectId: folder.inode, type: DIR_INDEX, offset: 0n }, { objectId: folder.inode, type: DIR_INDEX, offset: MAX_KEY.offset });
    let byIndex = new Map<bigint, { name: string; location: BtrfsKey }>();
    for (const item of items) for (const entry of parseFolderEntries(item.data, folder.inode)) byIndex.set(item.key.offset, entry);
    const log = this.log?.get(folder.tree);
    if (log !== undefined) byIndex = replayedFolder(byIndex, folder.inode, log);
    const names = new Map<string, BtrfsKey>();
    for (const entry of byIndex.values()) names.set(entry.name, entry.location);
    this.folderNames.set(identity, names);
    return names;
  }

  /** An entry as its inode tells it (a subvolume's folder known by its tree and inode). */
  private async entryOf(path: string, node: Node, listing: boolean): Promise<GuestFileEntry> {
    const entry = await posixEntryWithTarget(path, { number: Number(node.inode), ...node.item }, () => this.symlinkTarget(node, path), listing);
    if (entry.kind === 'directory') entry.folderId = `${node.tree}:${node.inode}${node.placeholder ? ':placeholder' : ''}`;
    return entry;
  }

  private async symlinkTarget(node: Node, path: string): Promise<string> {
    const size = node.item.size;
    if (size === 0 || size > MAX_TARGET_BYTES) throw corrupt(`the symlink ${path} has a target of ${size} bytes`);
    const extents = this.parsedExtents(node, path, await this.trees.items(node.root, ...extentKeys(node, 0, Number.MAX_SAFE_INTEGER)));
    const extent = extents[0];
    if (extent?.kind !== 'inline' || extent.length < size) throw corrupt(`the symlink ${path} keeps its target elsewhere than inline`);
    return decodeGuestName(this.inlineBytes(extent).subarray(0, size));
  }

  /**
   * A regular file's extents that may hold bytes of [from, to): those starting up to an extent's
   * longest (128 MiB) before it. Anything an earlier item covers there is a hole or preallocated
   * space, which reads as zeros anyway. A window at a time: a 1 TiB compressed file has millions.
   */
  private async fileExtents(node: Node, file: string, from: number, to: number): Promise<FileExtent[]> {
    refuseUnlessFile(node, file);
    const key = `${node.tree}:${node.inode}`;
    const cached = this.lastExtents;
    if (cached !== null && cached.key === key && cached.from <= from && to <= cached.to) return cached.extents;
    // A little more than asked: a copy reads on in pieces.
    const windowTo = Math.max(to, from + READ_WINDOW_BYTES);
    const extents = this.parsedExtents(node, file, await this.trees.items(node.root, ...extentKeys(node, Math.max(0, from - MAX_EXTENT_BYTES), windowTo)));
    this.lastExtents = { key, from, to: windowTo, extents };
    return extents;
  }

  /** A regular file's every extent, or null where there are more than one search gathers (files-diff and a copy then read instead). */
  private async wholeFileExtents(node: Node, file: string): Promise<FileExtent[] | null> {
    refuseUnlessFile(node, file);
    const items = await this.trees.itemsOrNull(node.root, ...extentKeys(node, 0, Number.MAX_SAFE_INTEGER));
    return items === null ? null : this.parsedExtents(node, file, items);
  }

  /**
   * EXTENT_DATA items as extents, checked (in order, not overlapping, compressed ones of a bounded
   * size), with the log's for this file over them where it has any (as its replay leaves them).
   */
  private parsedExtents(node: Node, path: string, items: readonly LeafItem[]): FileExtent[] {
    const committed = this.checkedExtents(node, path, items);
    const log = this.log?.get(node.tree);
    const logged = log?.extents.get(node.inode);
    if (log === undefined || (logged === undefined && !log.inodes.has(node.inode))) return committed;
    const replayed = this.checkedExtents(node, path, logged ?? []);
    // A logged regular file keeps no extent past its logged size (replay truncates it there).
    const end = (node.item.mode & S_IFMT) === S_IFREG && log.inodes.has(node.inode) ? Math.ceil(node.item.size / this.superblock.sectorBytes) * this.superblock.sectorBytes : Number.POSITIVE_INFINITY;
    const kept = committed.flatMap((extent) => outside(extent, replayed)).filter((extent) => extent.fileOffset < end);
    return this.checkedOrder([...kept, ...replayed].sort((a, b) => a.fileOffset - b.fileOffset), path);
  }

  private checkedOrder(extents: FileExtent[], path: string): FileExtent[] {
    let next = 0;
    for (const extent of extents) {
      if (extent.fileOffset < next) throw corrupt(`${path}'s extents overlap at ${extent.fileOffset}`);
      next = extent.fileOffset + extent.length;
    }
    return extents;
  }

  private checkedExtents(node: Node, path: string, items: readonly LeafItem[]): FileExtent[] {
    const extents: FileExtent[] = [];
    let next = 0;
    for (const item of items) {
      const extent = parseExtent(item.data, item.key.offset, node.inode);
      if (extent.fileOffset < next) throw corrupt(`${path}'s extents overlap at ${extent.fileOffset}`);
      if (extent.kind !== 'zeros' && extent.compression !== COMPRESSION_NONE && (extent.kind === 'inline' ? extent.length : extent.decompressedBytes) > MAX_DECOMPRESSED_BYTES) {
        throw corrupt(`${path} has a compressed extent of more than ${MAX_DECOMPRESSED_BYTES} bytes`);
      }
      next = extent.fileOffset + extent.length;
      extents.push(extent);
    }
    return extents;
  }

  private inlineBytes(extent: Extract<FileExtent, { kind: 'inline' }>): Uint8Array {
    if (extent.compression === COMPRESSION_NONE) return extent.bytes;
    return decompressExtent(extent.compression, extent.bytes, extent.length, this.superblock.sectorBytes);
  }

  /** A compressed extent whole, decompressed (the last one kept: reads come piece by piece). */
  private async decompressed(extent: Extract<FileExtent, { kind: 'regular' }>): Promise<Uint8Array> {
    if (this.lastDecompressed?.logical === extent.diskLogical) return this.lastDecompressed.bytes;
    if (extent.diskBytes > MAX_DECOMPRESSED_BYTES) throw corrupt(`a compressed extent stored in ${extent.diskBytes} bytes`);
    const stored = new Uint8Array(extent.diskBytes);
    await this.volume.read(stored, this.trees.chunks.physical(extent.diskLogical, extent.diskBytes));
    const bytes = decompressExtent(extent.compression, stored, extent.decompressedBytes, this.superblock.sectorBytes);
    this.lastDecompressed = { logical: extent.diskLogical, bytes };
    return bytes;
  }
}
