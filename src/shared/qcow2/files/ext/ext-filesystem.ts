/**
 * ext2/3/4, read-only, by Cowbell's own reader: the superblock is checked first (ext-superblock.ts:
 * geometry, and the features it reads), folders, inodes and symlinks come from their blocks
 * (ext-inodes.ts), what is kept inline in an inode from the inode (ext-inline-data.ts), and a
 * file's content straight from the volume through the block runs of its inode (ext-extents.ts).
 * A filesystem that was in use when its state was saved is read as the kernel would mount it: its
 * journal replayed first, in memory (ext-journal.ts). Nothing is ever written: no mount, no access time.
 */
import { Qcow2Error } from '../../errors.ts';
import type { GuestFileEntry } from '../../model.ts';
import { SAME_METADATA, type ByteRange, type ChangedBytes, type FilesystemReader, type GuestFilesystem, type UnchangedFolder, type VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { joinPath, pathParts } from '../paths.ts';
import { byName, damagedEntry, inInodeOrder, posixEntry, posixEntryWithTarget } from '../posix-entry.ts';
import { anyReplayed, withReplayed } from '../replayed-units.ts';
import { readMapped, type FileBlockMap } from '../block-map.ts';
import { extExtents, extFileBlockMap, inodeExtentsChanged } from './ext-extents.ts';
import { ExtInodeTable } from './ext-inode-table.ts';
import { journalBytes, journaledVolume, replayJournal } from './ext-journal.ts';
import { NO_IDENTITY, rememberedReplay, type VolumeOpenContext } from '../replay-memo.ts';
import { inlineContent } from './ext-inline-data.ts';
import { ENCRYPTED_FLAG, readFolder, readSymlink, ROOT_INODE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type ExtInode } from './ext-inodes.ts';
import { corrupt, hasExtMagic, readExtSuperblock, sameGeometry, type ExtSuperblock } from './ext-superblock.ts';

/** Folders whose names are kept, per mounted filesystem (two generations of half as many). */
const CACHED_FOLDERS = 16;

export const extReader: FilesystemReader = {
  kind: 'ext',
  probe: hasExtMagic,
  async open(volume: VolumeBytes, context: VolumeOpenContext = NO_IDENTITY): Promise<GuestFilesystem> {
    // Checked here (geometry, and the features this reader reads) before anything reads further.
    const superblock = await readExtSuperblock(volume);
    const journal = superblock.journalToReplay;
    if (journal === null) return new ExtFilesystem(volume, superblock, []);
    if (journal === 'external') {
      throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', 'The ext filesystem was in use and its latest changes wait in a journal on another device, which Cowbell cannot read');
    }
    const { blocks, caution } = await rememberedReplay(context, 'ext-journal', () => replayJournal(volume, superblock, new ExtInodeTable(volume, superblock), journal), journalBytes);
    if (blocks.size === 0) return new ExtFilesystem(volume, superblock, [], caution);
    const replayed = journaledVolume(volume, blocks, superblock.blockBytes);
    // The superblock may be among the journal's blocks: read again, as the kernel does after recovery.
    return new ExtFilesystem(replayed, await readExtSuperblock(replayed), [...blocks.keys()].sort((a, b) => a - b), caution);
  },
};

class ExtFilesystem implements GuestFilesystem {
  readonly kind = 'ext' as const;
  readonly label?: string;
  readonly caution?: string;
  /** Set once closed: every later call fails. */
  private closed: Qcow2Error | null = null;
  private lastMap: { inodeNumber: number; map: FileBlockMap | null } | null = null;
  /**
   * Folder inode → its names, in two generations (a folder found in the old one moves to the young
   * one: the root, asked for by every path, stays). Few: files-diff and listings work folder by
   * folder, and every folder kept longer survives V8's young generation, which then grows.
   */
  private readonly folderNames = new GenerationalCache<number, Map<string, number>>(CACHED_FOLDERS / 2);
  private readonly volume: VolumeBytes;
  private readonly superblock: ExtSuperblock;
  private readonly inodes: ExtInodeTable;
  /**
   * Blocks read from the journal rather than their home (ext-journal.ts): the guest ranges that
   * differ between two states say nothing of them, so what they hold is compared, not assumed.
   */
  private readonly journaled: readonly number[];

  constructor(volume: VolumeBytes, superblock: ExtSuperblock, journaled: readonly number[], caution: string | null = null) {
    this.volume = volume;
    this.superblock = superblock;
    this.journaled = journaled;
    if (caution !== null) this.caution = caution;
    this.inodes = new ExtInodeTable(volume, superblock);
    if (superblock.label !== '') this.label = superblock.label;
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    const parts = pathParts(path);
    const folder = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    const names = this.folderNames.get(inode.number) ?? (await this.folderEntries(inode, folder));
    const entries: GuestFileEntry[] = [];
    // In inode order, which is the inode table's: a folder lists its names in hash order, and a
    // large one's inodes looked up that way would read the table's pieces again and again.
    for (const [name, number] of inInodeOrder(names)) {
      const entryPath = joinPath(folder, name);
      try {
        const entryInode = this.named(entryPath, this.inodes.cached(number) ?? (await this.inodes.inode(number)));
        entries.push((entryInode.mode & S_IFMT) === S_IFLNK ? await this.entryOf(entryPath, entryInode, true) : posixEntry(name, entryPath, entryInode));
      } catch (error) {
        entries.push(damagedEntry(name, entryPath, error));
      }
    }
    return entries.sort(byName);
  }

  async stat(path: string): Promise<GuestFileEntry> {
    const parts = pathParts(path);
    const normalized = `/${parts.join('/')}`;
    return this.entryOf(normalized, await this.resolve(parts));
  }

  async read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const fileInode = await this.resolve(parts);
    if ((fileInode.mode & S_IFMT) === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if ((fileInode.mode & S_IFMT) !== S_IFREG) throw new Qcow2Error('NOT_A_FILE', `${file} is not a regular file`);
    refuseEncrypted(fileInode, file, 'its content');
    const { size } = fileInode;
    // ext4 addresses at most 2^32 blocks of a file: a larger size is damage (a copy would write it out for ever).
    if (size > 2 ** 32 * this.superblock.blockBytes) throw corrupt(`${file} claims ${size} bytes, more than an ext file can hold`);
    const wanted = Math.max(0, Math.min(buffer.length, size - offset));
    if (wanted === 0) return 0;
    const map = await this.fileBlockMap(fileInode);
    if (map !== null) {
      await readMapped(this.volume, map, buffer.subarray(0, wanted), offset);
      return wanted;
    }
    // Kept inline in its inode: at most the inode's size.
    const content = inlineContent(fileInode);
    const piece = content.subarray(Math.min(offset, content.length), Math.min(offset + wanted, content.length));
    buffer.set(piece);
    return piece.length;
  }

  async extents(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    if ((inode.mode & S_IFMT) === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if ((inode.mode & S_IFMT) !== S_IFREG) return [];
    // Content (or its map) replayed from the journal: its place on the volume does not tell whether it changed.
    if (this.journaled.length > 0 && mapJournaled(await this.fileBlockMap(inode), this.journaled)) return null;
    return extExtents(this.volume, this.superblock, inode);
  }

  async dataRanges(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const inode = await this.resolve(parts);
    if ((inode.mode & S_IFMT) !== S_IFREG) return null;
    refuseEncrypted(inode, `/${parts.join('/')}`, 'its content');
    // Blocks in no run (holes, unwritten extents) read as zeros (ext-extents.ts); inline data: no map.
    const map = await this.fileBlockMap(inode);
    if (map === null) return null;
    return map.runs.map((run) => ({ offset: run.fileBlock * map.blockBytes, length: run.count * map.blockBytes }));
  }

  async unchangedFolder(path: string, changed: ChangedBytes, earlier: GuestFilesystem): Promise<UnchangedFolder | null> {
    // The superblock's geometry decides where everything below is found (its counts change with every write).
    if (!(earlier instanceof ExtFilesystem) || !sameGeometry(this.superblock, earlier.superblock)) return null;
    // A replayed journal changes what blocks hold without the guest ranges showing it: a block
    // replayed in either state counts as changed, so whatever lies in it is compared as read.
    changed = withReplayed(changed, [this.journaled, earlier.journaled], this.superblock.blockBytes);
    const inodesBefore = earlier.inodes;
    const parts = pathParts(path);
    const folderPath = `/${parts.join('/')}`;
    const folder = await this.resolve(parts);
    if (folder === null || (folder.mode & S_IFMT) !== S_IFDIR) return null;
    // The path must lead to the same inode in both states: a folder renamed over it is another folder.
    if ((await earlier.resolve(parts))?.number !== folder.number) return null;
    if ((await this.inodes.placeChanged(folder.number, changed, inodesBefore)) || (await this.blocksChanged(folder, changed))) return null;
    const names = await this.folderEntries(folder, folderPath);
    // Sorted by UTF-16 code units, as files-diff's walk orders names.
    const sorted = [...names.keys()].sort();
    const entries: GuestFileEntry[] = [];
    const flags = new Uint8Array(sorted.length);
    for (const name of sorted) {
      const number = names.get(name) as number;
      const inode = this.inodes.cached(number) ?? (await this.inodes.inode(number));
      const type = inode.mode & S_IFMT;
      // A symlink's target may lie in blocks of its own: compared as usual.
      if (type === S_IFLNK) {
        entries.push(await this.entryOf(joinPath(folderPath, name), inode));
        continue;
      }
      // Without waiting where nothing must be read (most entries): a promise per entry was most of the garbage.
      const metadataChanged = this.inodes.placeChangedNow(number, changed, inodesBefore) ?? (await this.inodes.placeChanged(number, changed, inodesBefore));
      if (!metadataChanged && type !== S_IFDIR) {
        // The same inode: only a file's content may still differ (a device and the like has none).
        if (type !== S_IFREG || !(this.blocksChangedNow(inode, changed) ?? (await this.blocksChanged(inode, changed)))) continue;
      }
      flags[entries.length] = metadataChanged ? 0 : SAME_METADATA;
      entries.push(posixEntry(name, joinPath(folderPath, name), inode));
    }
    return { entries, flags: flags.subarray(0, entries.length) };
  }

  /** Whether a block holding the inode's content or mapping it changed; true for inline data (left to a comparison). */
  private async blocksChanged(inode: ExtInode, changed: ChangedBytes): Promise<boolean> {
    return mapChanged(await extFileBlockMap(this.volume, this.superblock, inode), changed);
  }

  /** blocksChanged when the inode alone tells, else undefined. */
  private blocksChangedNow(inode: ExtInode, changed: ChangedBytes): boolean | undefined {
    return inodeExtentsChanged(this.superblock, inode, changed);
  }

  /**
   * The inode at `path`, found through the folders' own blocks (symlinks on the way are not
   * followed).
   */
  private async resolve(parts: readonly string[]): Promise<ExtInode> {
    if (this.closed !== null) throw this.closed;
    // What was read already is taken without waiting: files-diff resolves a path per file.
    let inode = this.inodes.cached(ROOT_INODE) ?? (await this.inodes.inode(ROOT_INODE));
    // The folders on the way: ext has no hard links to folders, but a damaged one can name a folder
    // inside itself, and a walk down it would never end.
    const folders = [inode.number];
    for (let index = 0; index < parts.length; index++) {
      const names = (inode.mode & S_IFMT) === S_IFDIR ? this.folderNames.get(inode.number) : undefined;
      const found = names === undefined ? await this.folderEntries(inode, `/${parts.slice(0, index).join('/')}`) : names;
      const number = found.get(parts[index] as string) ?? ((inode.flags & CASEFOLD_FLAG) !== 0 ? caseFoldedMatch(found, parts[index] as string) : undefined);
      if (number === undefined) throw new Qcow2Error('NOT_FOUND', `/${parts.slice(0, index + 1).join('/')} does not exist`);
      inode = this.named(`/${parts.slice(0, index + 1).join('/')}`, this.inodes.cached(number) ?? (await this.inodes.inode(number)));
      if ((inode.mode & S_IFMT) !== S_IFDIR) continue;
      const first = folders.indexOf(number);
      if (first >= 0) {
        throw new Qcow2Error('FILESYSTEM_CORRUPT', `/${parts.slice(0, index + 1).join('/')} is the folder /${parts.slice(0, first).join('/')} again (a folder inside itself): the filesystem is damaged`);
      }
      folders.push(number);
    }
    return inode;
  }

  /** `inode`, named by a folder entry at `path`: a deleted one there is damage (the kernel's lookup says "deleted inode referenced"). */
  private named(path: string, inode: ExtInode): ExtInode {
    if (inode.linksCount === 0) throw new Qcow2Error('FILESYSTEM_CORRUPT', `The ext filesystem is damaged: ${path} names inode ${inode.number}, which is deleted (it has no links)`);
    return inode;
  }

  /** A folder's names (the last folders read are kept: a listing resolves its parent once per entry otherwise). */
  private async folderEntries(folder: ExtInode, path: string): Promise<Map<string, number>> {
    if ((folder.mode & S_IFMT) !== S_IFDIR) throw new Qcow2Error('NOT_A_DIRECTORY', `${path} is not a folder`);
    refuseEncrypted(folder, path, 'its names');
    const cached = this.folderNames.get(folder.number);
    if (cached !== undefined) return cached;
    const names = await readFolder(this.volume, this.superblock, folder);
    this.folderNames.set(folder.number, names);
    return names;
  }

  private entryOf(path: string, inode: ExtInode, listing = false): Promise<GuestFileEntry> {
    return posixEntryWithTarget(
      path,
      inode,
      async () => {
        refuseEncrypted(inode, path, 'where the link leads');
        return readSymlink(this.volume, this.superblock, inode);
      },
      listing,
    );
  }

  /** The file's block runs (the last file's kept: a copy reads one file piece by piece), or null for inline data. */
  private async fileBlockMap(inode: ExtInode): Promise<FileBlockMap | null> {
    if (this.lastMap?.inodeNumber !== inode.number) this.lastMap = { inodeNumber: inode.number, map: await extFileBlockMap(this.volume, this.superblock, inode) };
    return this.lastMap.map;
  }

  async close(): Promise<void> {
    // Nothing to unmount or write: only later calls are refused.
    this.closed ??= new Qcow2Error('INVALID_ARGUMENT', 'The filesystem is closed');
  }
}

/** EXT4_CASEFOLD_FL: the guest looks names up in this folder without regard to case (the casefold feature). */
const CASEFOLD_FLAG = 0x40000000;

/**
 * The entry a case-insensitive folder finds for `name`: the one equal to it once both are
 * decomposed (NFD) and lower-cased — close to the kernel's UTF-8 case folding, which also
 * decomposes. Only asked when no name matches exactly.
 */
function caseFoldedMatch(names: ReadonlyMap<string, number>, name: string): number | undefined {
  const folded = name.normalize('NFD').toLowerCase();
  for (const [candidate, number] of names) if (candidate.normalize('NFD').toLowerCase() === folded) return number;
  return undefined;
}

function mapChanged(map: FileBlockMap | null, changed: ChangedBytes): boolean {
  if (map === null) return true;
  const { blockBytes } = map;
  for (const run of map.runs) if (changed(run.volumeBlock * blockBytes, run.count * blockBytes)) return true;
  for (const block of map.nodeBlocks) if (changed(block * blockBytes, blockBytes)) return true;
  return false;
}

/**
 * Whether a block of the file's content or of its map was replayed from the journal (inline data:
 * its inode's block, so yes). `journaled` is in ascending order: a run is one search, however long.
 */
function mapJournaled(map: FileBlockMap | null, journaled: readonly number[]): boolean {
  if (map === null) return true;
  return map.runs.some((run) => anyReplayed(journaled, run.volumeBlock, run.count)) || map.nodeBlocks.some((block) => anyReplayed(journaled, block, 1));
}

/**
 * A file or folder the guest encrypted (ext4's fscrypt) holds ciphertext where a name, a link's
 * target or content would be: shown as it is, it would pass for the guest's own bytes.
 */
function refuseEncrypted(inode: ExtInode, path: string, what: string): void {
  if ((inode.flags & ENCRYPTED_FLAG) !== 0) throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `${path} is encrypted inside the guest (ext4 encryption): Cowbell cannot read ${what}`);
}
