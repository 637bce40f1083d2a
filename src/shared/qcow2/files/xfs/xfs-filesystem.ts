/**
 * XFS (version 4 and 5), read-only, by Cowbell's own reader: the superblock checked first
 * (xfs-superblock.ts), inodes found by number (xfs-inodes.ts), folders from the inode or their data
 * blocks (xfs-folders.ts), content through the data fork's extents (xfs-extents.ts). A volume the
 * guest had mounted is read with its log replayed first, in memory (xfs-log.ts), as the kernel
 * mounts it. Nothing is ever written.
 */
import { Qcow2Error } from '../../errors.ts';
import type { GuestFileEntry } from '../../model.ts';
import { readMapped } from '../block-map.ts';
import { SAME_METADATA, type ByteRange, type ChangedBytes, type FilesystemReader, type GuestFilesystem, type UnchangedFolder, type VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { joinPath, pathParts } from '../paths.ts';
import { byName, damagedEntry, inInodeOrder, posixEntry, posixEntryWithTarget, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../posix-entry.ts';
import { corrupt, unsupported } from './xfs-bytes.ts';
import { mappedRanges, xfsBlockMap, type XfsBlockMap } from './xfs-extents.ts';
import { readFolder } from './xfs-folders.ts';
import { FORMAT_BTREE, FORMAT_EXTENTS, inodeOffset, REALTIME_FLAG, XfsInodeTable, type XfsInode } from './xfs-inodes.ts';
import { withReplayed } from '../replayed-units.ts';
import { replayXfsLog, withXfsReplay, xfsReplayBytes, type XfsVolumeState } from './xfs-log.ts';
import { NO_IDENTITY, rememberedReplay, type VolumeOpenContext } from '../replay-memo.ts';
import { withMapChanges, type XfsMapChange } from './xfs-map-changes.ts';
import { readSymlink } from './xfs-symlinks.ts';
import { hasXfsMagic, readXfsSuperblock, sameGeometry, type XfsSuperblock } from './xfs-superblock.ts';

/** Folders whose names are kept (two generations of half as many). */
const CACHED_FOLDERS = 16;
/** XFS files end before 2^63 bytes; a JavaScript number names bytes up to 2^53. */
const MAX_FILE_BYTES = 2 ** 53;
const SECTOR_BYTES = 512;

export const XFS_READER: FilesystemReader = {
  kind: 'xfs',
  probe: hasXfsMagic,
  async open(volume: VolumeBytes, context: VolumeOpenContext = NO_IDENTITY): Promise<GuestFilesystem> {
    const superblock = await readXfsSuperblock(volume);
    const replay = await rememberedReplay(context, 'xfs-log', () => replayXfsLog(volume, superblock), xfsReplayBytes);
    const recovered = withXfsReplay(volume, replay);
    // The superblock may be among what the log changed: read again, as the kernel does after recovery.
    return new XfsFilesystem(recovered.volume, recovered.replayedSectors.length === 0 ? superblock : await readXfsSuperblock(recovered.volume), recovered);
  },
};

class XfsFilesystem implements GuestFilesystem {
  readonly kind = 'xfs' as const;
  readonly label?: string;
  readonly caution?: string;
  private closed: Qcow2Error | null = null;
  private lastMap: { inodeNumber: number; map: XfsBlockMap } | null = null;
  private readonly folderNames = new GenerationalCache<number, Map<string, number>>(CACHED_FOLDERS / 2);
  private readonly volume: VolumeBytes;
  private readonly superblock: XfsSuperblock;
  private readonly inodes: XfsInodeTable;
  /** The 512-byte sectors the log's replay changed, ascending. */
  private readonly replayed: readonly number[];
  /** Block-map changes the log left to be finished, by inode. */
  private readonly mapChanges: ReadonlyMap<number, readonly XfsMapChange[]>;

  constructor(volume: VolumeBytes, superblock: XfsSuperblock, recovered: Pick<XfsVolumeState, 'replayedSectors' | 'mapChanges' | 'caution'>) {
    this.volume = volume;
    this.superblock = superblock;
    this.replayed = recovered.replayedSectors;
    this.mapChanges = recovered.mapChanges;
    const { caution } = recovered;
    this.inodes = new XfsInodeTable(volume, superblock);
    if (superblock.label !== '') this.label = superblock.label;
    if (caution !== null) this.caution = caution;
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    const parts = pathParts(path);
    const folder = `/${parts.join('/')}`;
    const names = await this.folderEntries(await this.resolve(parts), folder);
    const entries: GuestFileEntry[] = [];
    // In inode order, which is the inode chunks': a large folder's names in their own order would read chunks again and again.
    for (const [name, number] of inInodeOrder(names)) {
      const path = joinPath(folder, name);
      try {
        const inode = await this.inode(number);
        entries.push((inode.mode & S_IFMT) === S_IFLNK ? await this.entryOf(path, inode, true) : posixEntry(name, path, inode));
      } catch (error) {
        entries.push(damagedEntry(name, path, error));
      }
    }
    return entries.sort(byName);
  }

  async stat(path: string): Promise<GuestFileEntry> {
    const parts = pathParts(path);
    return this.entryOf(`/${parts.join('/')}`, await this.resolve(parts));
  }

  async read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    const map = await this.contentMap(inode, file);
    const wanted = Math.max(0, Math.min(buffer.length, inode.size - offset));
    if (wanted === 0) return 0;
    await readMapped(this.volume, map, buffer.subarray(0, wanted), offset);
    return wanted;
  }

  async extents(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    if ((inode.mode & S_IFMT) === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if ((inode.mode & S_IFMT) !== S_IFREG) return [];
    return mappedRanges(await this.contentMap(inode, file));
  }

  async dataRanges(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    if ((inode.mode & S_IFMT) !== S_IFREG) return null;
    // Holes and preallocated (unwritten) extents read as zeros.
    const map = await this.contentMap(inode, file);
    return map.runs.map((run) => ({ offset: run.fileBlock * map.blockBytes, length: run.count * map.blockBytes }));
  }

  async unchangedFolder(path: string, changed: ChangedBytes, earlier: GuestFilesystem): Promise<UnchangedFolder | null> {
    // The geometry decides where every inode and block below is found.
    if (!(earlier instanceof XfsFilesystem) || !sameGeometry(this.superblock, earlier.superblock)) return null;
    // A replayed log changes what sectors hold without the guest ranges showing it: a sector either
    // state replayed counts as changed, so whatever lies in it is compared as read.
    changed = withReplayed(changed, [this.replayed, earlier.replayed], SECTOR_BYTES);
    // Block-map changes finished after replay move a file's content without any byte of the volume changing.
    if (this.mapChanges.size > 0 || earlier.mapChanges.size > 0) return null;
    const parts = pathParts(path);
    const folderPath = `/${parts.join('/')}`;
    const folder = await this.resolve(parts);
    if ((folder.mode & S_IFMT) !== S_IFDIR) return null;
    // The path must lead to the same inode in both states: a folder renamed over it is another folder.
    if ((await earlier.resolveOrNull(parts))?.number !== folder.number) return null;
    if (this.inodeChanged(folder.number, changed) || (await this.forkChanged(folder, changed))) return null;
    const names = await this.folderEntries(folder, folderPath);
    // Sorted by UTF-16 code units, as files-diff's walk orders names.
    const sorted = [...names.keys()].sort();
    const entries: GuestFileEntry[] = [];
    const flags = new Uint8Array(sorted.length);
    for (const name of sorted) {
      const number = names.get(name) as number;
      const inode = await this.inode(number);
      const type = inode.mode & S_IFMT;
      // A symlink's target may lie in blocks of its own: compared as usual.
      if (type === S_IFLNK) {
        entries.push(await this.entryOf(joinPath(folderPath, name), inode, true));
        continue;
      }
      const metadataChanged = this.inodeChanged(number, changed);
      // The same inode: only a file's content may still differ (a device and the like has none).
      if (!metadataChanged && type !== S_IFDIR && (type !== S_IFREG || !(await this.forkChanged(inode, changed)))) continue;
      flags[entries.length] = metadataChanged ? 0 : SAME_METADATA;
      entries.push(posixEntry(name, joinPath(folderPath, name), inode));
    }
    return { entries, flags: flags.subarray(0, entries.length) };
  }

  /** Whether the bytes of inode `number` differ between the two states. */
  private inodeChanged(number: number, changed: ChangedBytes): boolean {
    return changed(inodeOffset(this.superblock, number), this.superblock.inodeBytes);
  }

  /** Whether a block the inode's data fork maps, or a tree block mapping them, differs (local content lies in the inode). */
  private async forkChanged(inode: XfsInode, changed: ChangedBytes): Promise<boolean> {
    if (inode.format !== FORMAT_EXTENTS && inode.format !== FORMAT_BTREE) return false;
    const map = await this.blockMap(inode);
    const { blockBytes } = map;
    const runChanged = (run: { volumeBlock: number; count: number }): boolean => changed(run.volumeBlock * blockBytes, run.count * blockBytes);
    return map.runs.some(runChanged) || map.unwritten.some(runChanged) || map.nodeBlocks.some((block) => changed(block * blockBytes, blockBytes));
  }

  private async resolveOrNull(parts: readonly string[]): Promise<XfsInode | null> {
    try {
      return await this.resolve(parts);
    } catch (error) {
      if (error instanceof Qcow2Error && error.code !== 'INVALID_ARGUMENT') return null;
      throw error;
    }
  }

  /** A regular file's block map (the last file's kept: a copy reads one file piece by piece). */
  private async contentMap(inode: XfsInode, file: string): Promise<XfsBlockMap> {
    const type = inode.mode & S_IFMT;
    if (type === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if (type !== S_IFREG) throw new Qcow2Error('NOT_A_FILE', `${file} is not a regular file`);
    if ((inode.flags & REALTIME_FLAG) !== 0) throw unsupported(`${file} keeps its content on the realtime device, another disk`);
    if (inode.size > MAX_FILE_BYTES) throw corrupt(`${file} claims ${inode.size} bytes`);
    if (inode.format !== FORMAT_EXTENTS && inode.format !== FORMAT_BTREE) throw corrupt(`${file}'s content is in format ${inode.format}`);
    if (this.lastMap?.inodeNumber !== inode.number) this.lastMap = { inodeNumber: inode.number, map: await this.blockMap(inode) };
    return this.lastMap.map;
  }

  /** The inode's block map, with the changes the log left to be finished applied (as the kernel finishes them after replay). */
  private async blockMap(inode: XfsInode): Promise<XfsBlockMap> {
    const map = await xfsBlockMap(this.volume, this.superblock, inode);
    const changes = this.mapChanges.get(inode.number);
    return changes === undefined ? map : withMapChanges(map, changes);
  }

  /** The inode at `path`, through the folders' own blocks (symlinks on the way are not followed). */
  private async resolve(parts: readonly string[]): Promise<XfsInode> {
    if (this.closed !== null) throw this.closed;
    let inode = await this.inode(this.superblock.rootInode);
    if ((inode.mode & S_IFMT) !== S_IFDIR) throw corrupt(`its root, inode ${inode.number}, is not a folder`);
    // XFS has no hard links to folders, but a damaged one can name a folder inside itself.
    const folders = [inode.number];
    for (let index = 0; index < parts.length; index++) {
      const names = await this.folderEntries(inode, `/${parts.slice(0, index).join('/')}`);
      const part = parts[index] as string;
      const number = names.get(part) ?? (this.superblock.asciiCaseInsensitive ? asciiCaseInsensitiveMatch(names, part) : undefined);
      if (number === undefined) throw new Qcow2Error('NOT_FOUND', `/${parts.slice(0, index + 1).join('/')} does not exist`);
      inode = await this.inode(number);
      if ((inode.mode & S_IFMT) !== S_IFDIR) continue;
      const first = folders.indexOf(number);
      if (first >= 0) throw corrupt(`/${parts.slice(0, index + 1).join('/')} is the folder /${parts.slice(0, first).join('/')} again (a folder inside itself)`);
      folders.push(number);
    }
    return inode;
  }

  private async inode(number: number): Promise<XfsInode> {
    return this.inodes.cached(number) ?? (await this.inodes.inode(number));
  }

  private async folderEntries(folder: XfsInode, path: string): Promise<Map<string, number>> {
    if ((folder.mode & S_IFMT) !== S_IFDIR) throw new Qcow2Error('NOT_A_DIRECTORY', `${path} is not a folder`);
    const cached = this.folderNames.get(folder.number);
    if (cached !== undefined) return cached;
    const names = await readFolder(this.volume, this.superblock, folder);
    this.folderNames.set(folder.number, names);
    return names;
  }

  private entryOf(path: string, inode: XfsInode, listing = false): Promise<GuestFileEntry> {
    return posixEntryWithTarget(path, inode, () => readSymlink(this.volume, this.superblock, inode), listing);
  }

  async close(): Promise<void> {
    this.closed ??= new Qcow2Error('INVALID_ARGUMENT', 'The filesystem is closed');
  }
}

/** The entry whose name equals `name` but for ASCII case (a filesystem made with mkfs.xfs -n version=ci). */
function asciiCaseInsensitiveMatch(names: ReadonlyMap<string, number>, name: string): number | undefined {
  const lower = asciiLower(name);
  for (const [candidate, number] of names) if (asciiLower(candidate) === lower) return number;
  return undefined;
}

function asciiLower(text: string): string {
  return text.replace(/[A-Z]/g, (letter) => letter.toLowerCase());
}
