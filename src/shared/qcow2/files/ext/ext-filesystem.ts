/**
 * ext2/3/4 through libext2fs (the npm package `ext2fs`), read-only: the disk it is given refuses
 * every write and discard, files are opened with O_NOATIME (a plain open would write the inode's
 * access time) and nothing is created, so unmounting has nothing to write either. The superblock is
 * checked here (ext-superblock.ts: geometry, and the features libext2fs's mount refuses) before
 * anything else is read, and each mount has a WebAssembly instance of its own (ext2fs-module.ts):
 * a hostile volume that aborts libext2fs breaks only its own mount. Folders, inodes and symlinks
 * are read by Cowbell's own code (ext-inodes.ts); a file's content straight from the volume through
 * the block runs of its inode (ext-extents.ts), which libext2fs would copy one block at a time
 * through its heap. Only what is kept inline in an inode goes through libext2fs, which is loaded and
 * mounted the first time that happens (most volumes never need it).
 */
import { Qcow2Error } from '../../errors.ts';
import type { GuestFileEntry, GuestFileKind } from '../../model.ts';
import { SAME_METADATA, type ByteRange, type ChangedBytes, type FilesystemReader, type GuestFilesystem, type UnchangedFolder, type VolumeBytes } from '../filesystem.ts';
import { GenerationalCache } from '../generational-cache.ts';
import { joinPath, pathParts } from '../paths.ts';
import { loadExt2fsInstance, O_NOATIME, O_NOFOLLOW, O_RDONLY, type Ext2fsDisk, type Ext2fsModule, type Ext2fsMount, type Ext2fsPromises, type Ext2fsStats } from './ext2fs-module.ts';
import { extExtents, extFileBlockMap, inodeExtentsChanged, readMapped, type FileBlockMap } from './ext-extents.ts';
import { ExtInodeTable } from './ext-inode-table.ts';
import { ENCRYPTED_FLAG, libext2fsPath, readFolder, readSymlink, ROOT_INODE, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type ExtInode } from './ext-inodes.ts';
import { corrupt, hasExtMagic, readExtSuperblock, sameGeometry, type ExtSuperblock } from './ext-superblock.ts';

/** libext2fs's heap is 16 MiB and cannot grow: content is read in pieces far below that. */
const READ_PIECE_BYTES = 1024 * 1024;
/** Folders whose names are kept, per mounted filesystem (two generations of half as many). */
const CACHED_FOLDERS = 16;

export const extReader: FilesystemReader = {
  kind: 'ext',
  probe: hasExtMagic,
  async open(volume: VolumeBytes): Promise<GuestFilesystem> {
    // Checked here (geometry, and the features libext2fs's mount refuses) before anything reads further.
    const superblock = await readExtSuperblock(volume);
    return new ExtFilesystem(volume, superblock);
  },
};

/**
 * libext2fs, loaded and mounted on the first call that needs it (an inline folder, file or
 * symlink; a path Cowbell's own reading cannot follow): most listings and copies never do, and
 * loading the WebAssembly module and mounting costs tens of milliseconds. A failed mount is kept:
 * every later call fails with the same typed error.
 */
interface Libext2fs {
  ext2fs: Ext2fsModule;
  mount: Ext2fsMount;
}

async function mountLibext2fs(disk: ReadOnlyDisk): Promise<Libext2fs> {
  const ext2fs = loadExt2fsInstance();
  try {
    return { ext2fs, mount: await ext2fs.mount(disk, 0) };
  } catch (error) {
    throw disk.explain(error, 'mounting');
  }
}

/** The volume as libext2fs's disk: reads only; the first failed read is kept to explain libext2fs's error. */
class ReadOnlyDisk implements Ext2fsDisk {
  private readonly volume: VolumeBytes;
  private failure: unknown = null;

  constructor(volume: VolumeBytes) {
    this.volume = volume;
  }

  async read(buffer: Buffer, bufferOffset: number, length: number, fileOffset: number): Promise<{ bytesRead: number; buffer: Buffer }> {
    try {
      await this.volume.read(buffer.subarray(bufferOffset, bufferOffset + length), fileOffset);
    } catch (error) {
      this.failure ??= error;
      throw error;
    }
    return { bytesRead: length, buffer };
  }

  write(): Promise<never> {
    return Promise.reject(new Qcow2Error('READ_ONLY', 'The guest filesystem is read-only here'));
  }

  discard(): Promise<never> {
    return Promise.reject(new Qcow2Error('READ_ONLY', 'The guest filesystem is read-only here'));
  }

  async flush(): Promise<void> {}

  /** libext2fs's error as a typed one: a failed read of the image comes first (it is the cause). */
  explain(error: unknown, what: string): Qcow2Error {
    const failure = this.failure;
    this.failure = null;
    if (failure instanceof Qcow2Error) return failure;
    if (error instanceof Qcow2Error) return error;
    if (isWasmAbort(error)) return new Qcow2Error('FILESYSTEM_CORRUPT', `The ext filesystem is damaged: libext2fs stopped while ${what} (${error.message})`, { cause: error });
    const code = (error as { code?: unknown } | null)?.code;
    const detail = error instanceof Error ? error.message : String(error);
    return new Qcow2Error('FILESYSTEM_CORRUPT', `The ext filesystem is damaged: ${what} failed (${typeof code === 'string' ? code : detail})`, { cause: error });
  }
}

class ExtFilesystem implements GuestFilesystem {
  readonly kind = 'ext' as const;
  readonly label?: string;
  /** Set once libext2fs aborted: its instance is unusable from then on. */
  private broken: Qcow2Error | null = null;
  private lastMap: { inodeNumber: number; map: FileBlockMap | null } | null = null;
  /**
   * Folder inode → its names, in two generations (a folder found in the old one moves to the young
   * one: the root, asked for by every path, stays). Few: files-diff and listings work folder by
   * folder, and every folder kept longer survives V8's young generation, which then grows.
   */
  private readonly folderNames = new GenerationalCache<number, Map<string, number> | null>(CACHED_FOLDERS / 2);
  private libext2fs: Promise<Libext2fs> | null = null;
  private readonly volume: VolumeBytes;
  private readonly superblock: ExtSuperblock;
  private readonly disk: ReadOnlyDisk;
  private readonly inodes: ExtInodeTable;

  constructor(volume: VolumeBytes, superblock: ExtSuperblock) {
    this.volume = volume;
    this.superblock = superblock;
    this.disk = new ReadOnlyDisk(volume);
    this.inodes = new ExtInodeTable(volume, superblock);
    if (superblock.label !== '') this.label = superblock.label;
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    const parts = pathParts(path);
    const folder = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    const names = inode === null ? null : (this.folderNames.get(inode.number) ?? (await this.folderEntries(inode, folder)));
    if (inode === null || names === null) return this.listThroughLibext2fs(folder);
    const entries: GuestFileEntry[] = [];
    for (const [name, number] of names) {
      const entryPath = joinPath(folder, name);
      const entryInode = this.inodes.cached(number) ?? (await this.inodes.inode(number));
      entries.push((entryInode.mode & S_IFMT) === S_IFLNK ? await this.entryOf(entryPath, entryInode) : plainEntry(name, entryPath, entryInode));
    }
    return entries.sort(byName);
  }

  async stat(path: string): Promise<GuestFileEntry> {
    const parts = pathParts(path);
    const normalized = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    return inode === null ? this.entryThroughLibext2fs(normalized) : this.entryOf(normalized, inode);
  }

  async read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const inode = await this.resolve(parts);
    const mode = inode === null ? (await this.lstat(file)).mode : inode.mode;
    if ((mode & S_IFMT) === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if ((mode & S_IFMT) !== S_IFREG) throw new Qcow2Error('NOT_A_FILE', `${file} is not a regular file`);
    const fileInode = inode ?? (await this.lstatInode(file));
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
    return this.call(file, 'reading', async (libext2fs) => {
      const handle = await libext2fs.open(libext2fsPath(file), O_RDONLY | O_NOATIME | O_NOFOLLOW);
      try {
        let done = 0;
        while (done < wanted) {
          const piece = Buffer.from(buffer.buffer, buffer.byteOffset + done, Math.min(READ_PIECE_BYTES, wanted - done));
          const { bytesRead } = await handle.read(piece, 0, piece.length, offset + done);
          if (bytesRead === 0) break;
          done += bytesRead;
        }
        return done;
      } finally {
        await handle.close();
      }
    });
  }

  async extents(path: string): Promise<ByteRange[] | null> {
    const parts = pathParts(path);
    const file = `/${parts.join('/')}`;
    const inode = (await this.resolve(parts)) ?? (await this.lstatInode(file));
    if ((inode.mode & S_IFMT) === S_IFDIR) throw new Qcow2Error('IS_A_DIRECTORY', `${file} is a folder`);
    if ((inode.mode & S_IFMT) !== S_IFREG) return [];
    return extExtents(this.volume, this.superblock, inode);
  }

  async unchangedFolder(path: string, changed: ChangedBytes, earlier: GuestFilesystem): Promise<UnchangedFolder | null> {
    // The superblock's geometry decides where everything below is found (its counts change with every write).
    if (!(earlier instanceof ExtFilesystem) || !sameGeometry(this.superblock, earlier.superblock)) return null;
    const inodesBefore = earlier.inodes;
    const parts = pathParts(path);
    const folderPath = `/${parts.join('/')}`;
    const folder = await this.resolve(parts);
    if (folder === null || (folder.mode & S_IFMT) !== S_IFDIR) return null;
    // The path must lead to the same inode in both states: a folder renamed over it is another folder.
    if ((await earlier.resolve(parts))?.number !== folder.number) return null;
    if ((await this.inodes.placeChanged(folder.number, changed, inodesBefore)) || (await this.blocksChanged(folder, changed))) return null;
    const names = await this.folderEntries(folder, folderPath);
    if (names === null) return null;
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
      entries.push(plainEntry(name, joinPath(folderPath, name), inode));
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
   * followed); null when a folder on the way is kept inline, which only libext2fs reads.
   */
  private async resolve(parts: readonly string[]): Promise<ExtInode | null> {
    if (this.broken !== null) throw this.broken;
    // What was read already is taken without waiting: files-diff resolves a path per file.
    let inode = this.inodes.cached(ROOT_INODE) ?? (await this.inodes.inode(ROOT_INODE));
    // The folders on the way: ext has no hard links to folders, but a damaged one can name a folder
    // inside itself, and a walk down it would never end.
    const folders = [inode.number];
    for (let index = 0; index < parts.length; index++) {
      const names = (inode.mode & S_IFMT) === S_IFDIR ? this.folderNames.get(inode.number) : undefined;
      const found = names === undefined ? await this.folderEntries(inode, `/${parts.slice(0, index).join('/')}`) : names;
      if (found === null) return null;
      const number = found.get(parts[index] as string);
      if (number === undefined) throw new Qcow2Error('NOT_FOUND', `/${parts.slice(0, index + 1).join('/')} does not exist`);
      inode = this.inodes.cached(number) ?? (await this.inodes.inode(number));
      if ((inode.mode & S_IFMT) !== S_IFDIR) continue;
      const first = folders.indexOf(number);
      if (first >= 0) {
        throw new Qcow2Error('FILESYSTEM_CORRUPT', `/${parts.slice(0, index + 1).join('/')} is the folder /${parts.slice(0, first).join('/')} again (a folder inside itself): the filesystem is damaged`);
      }
      folders.push(number);
    }
    return inode;
  }

  /** A folder's names (the last folders read are kept: a listing resolves its parent once per entry otherwise). */
  private async folderEntries(folder: ExtInode, path: string): Promise<Map<string, number> | null> {
    if ((folder.mode & S_IFMT) !== S_IFDIR) throw new Qcow2Error('NOT_A_DIRECTORY', `${path} is not a folder`);
    refuseEncrypted(folder, path, 'its names');
    const cached = this.folderNames.get(folder.number);
    if (cached !== undefined) return cached;
    const names = await readFolder(this.volume, this.superblock, folder);
    this.folderNames.set(folder.number, names);
    return names;
  }

  private async entryOf(path: string, inode: ExtInode): Promise<GuestFileEntry> {
    const entry = plainEntry(path === '/' ? '' : path.slice(path.lastIndexOf('/') + 1), path, inode);
    if (entry.kind === 'symlink') {
      refuseEncrypted(inode, path, 'where the link leads');
      entry.target = (await readSymlink(this.volume, this.superblock, inode)) ?? clipToBytes(await this.call(path, 'reading the link', (libext2fs) => libext2fs.readlink(libext2fsPath(path))), inode.size);
    }
    return entry;
  }

  /** The file's block runs (the last file's kept: a copy reads one file piece by piece), or null for inline data. */
  private async fileBlockMap(inode: ExtInode): Promise<FileBlockMap | null> {
    if (this.lastMap?.inodeNumber !== inode.number) this.lastMap = { inodeNumber: inode.number, map: await extFileBlockMap(this.volume, this.superblock, inode) };
    return this.lastMap.map;
  }

  private async listThroughLibext2fs(folder: string): Promise<GuestFileEntry[]> {
    const stats = await this.lstat(folder);
    if (!stats.isDirectory()) throw new Qcow2Error('NOT_A_DIRECTORY', `${folder} is not a folder`);
    const names = await this.call(folder, 'listing', (libext2fs) => libext2fs.readdir(libext2fsPath(folder)));
    const entries: GuestFileEntry[] = [];
    for (const name of names) {
      if (name === '.' || name === '..') continue;
      // Spelled as this reader spells names read from the disk (ext-inodes.ts guestFileName).
      entries.push(await this.entryThroughLibext2fs(joinPath(folder, name.replaceAll('\\', '\\\\'))));
    }
    return entries.sort(byName);
  }

  private async entryThroughLibext2fs(path: string): Promise<GuestFileEntry> {
    const stats = await this.lstat(path);
    return this.entryOf(path, await this.inodes.inode(stats.ino));
  }

  private async lstatInode(path: string): Promise<ExtInode> {
    return this.inodes.inode((await this.lstat(path)).ino);
  }

  async close(): Promise<void> {
    if (this.broken !== null) return;
    this.broken = new Qcow2Error('INVALID_ARGUMENT', 'The filesystem is closed');
    try {
      const libext2fs = await this.libext2fs;
      if (libext2fs !== null) await libext2fs.ext2fs.umount(libext2fs.mount);
    } catch {
      // Nothing was written (the disk refuses writes), or the mount had failed: a failure here changes nothing on the image.
    }
  }

  private lstat(path: string): Promise<Ext2fsStats> {
    // node-ext2fs strips trailing slashes, so the root is asked for as "/.".
    return this.call(path, 'reading', (libext2fs) => libext2fs.lstat(path === '/' ? '/.' : libext2fsPath(path)));
  }

  /** One libext2fs operation (mounting it first if need be), its errors typed; an abort marks this mount broken. */
  private async call<T>(path: string, what: string, operation: (libext2fs: Ext2fsPromises) => Promise<T>): Promise<T> {
    if (this.broken !== null) throw this.broken;
    this.libext2fs ??= mountLibext2fs(this.disk);
    const { mount } = await this.libext2fs;
    if (this.broken !== null) throw this.broken;
    try {
      return await operation(mount.promises);
    } catch (error) {
      const code = (error as { code?: unknown } | null)?.code;
      if (code === 'ENOENT') throw new Qcow2Error('NOT_FOUND', `${path} does not exist`, { cause: error });
      if (code === 'ENOTDIR') throw new Qcow2Error('NOT_A_DIRECTORY', `A part of ${path} is not a folder`, { cause: error });
      if (code === 'EISDIR') throw new Qcow2Error('IS_A_DIRECTORY', `${path} is a folder`, { cause: error });
      const typed = this.disk.explain(error, `${what} ${path}`);
      if (isWasmAbort(error)) this.broken = typed;
      throw typed;
    }
  }
}

/** A WebAssembly trap or an Emscripten abort ("Aborted(OOM)"): the instance is unusable after it. */
function isWasmAbort(error: unknown): error is Error {
  return error instanceof Error && error.name === 'RuntimeError';
}

/** An entry as its inode tells it (a symlink's target is added by entryOf). */
function plainEntry(name: string, path: string, inode: ExtInode): GuestFileEntry {
  const kind = kindOfMode(inode.mode);
  const entry: GuestFileEntry = { name, path, kind, size: kind === 'directory' ? 0 : inode.size, mtimeMs: inode.mtimeMs, permissions: inode.mode & 0o777 };
  if (kind === 'directory') entry.folderId = String(inode.number);
  return entry;
}

function kindOfMode(mode: number): GuestFileKind {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'directory';
    case S_IFLNK:
      return 'symlink';
    default:
      return 'other';
  }
}

function mapChanged(map: FileBlockMap | null, changed: ChangedBytes): boolean {
  if (map === null) return true;
  const { blockBytes } = map;
  for (const run of map.runs) if (changed(run.volumeBlock * blockBytes, run.count * blockBytes)) return true;
  for (const block of map.nodeBlocks) if (changed(block * blockBytes, blockBytes)) return true;
  return false;
}

function byName(a: GuestFileEntry, b: GuestFileEntry): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * A file or folder the guest encrypted (ext4's fscrypt) holds ciphertext where a name, a link's
 * target or content would be: shown as it is, it would pass for the guest's own bytes.
 */
function refuseEncrypted(inode: ExtInode, path: string, what: string): void {
  if ((inode.flags & ENCRYPTED_FLAG) !== 0) throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `${path} is encrypted inside the guest (ext4 encryption): Cowbell cannot read ${what}`);
}

/**
 * A target libext2fs read (an inline-data symlink's) cut to the inode's size in bytes: node-ext2fs
 * hands it over without its end, so whatever followed in its buffer came with it.
 */
function clipToBytes(target: string, size: number): string {
  const bytes = new TextEncoder().encode(target);
  return bytes.length <= size ? target : new TextDecoder().decode(bytes.subarray(0, size));
}
