/**
 * A FAT12/16/32 volume as a read-only GuestFilesystem. Paths are found case-insensitively, by the
 * long name or the 8.3 name, as FAT does; listings show the stored names.
 *
 * The folders are kept a tree whatever the bytes say, so a walk over every folder ends: a
 * subfolder's ".." must name the folder it was found in, one folder may not name the same
 * subfolder cluster twice, no entry may name the root, and only the first of several entries
 * with the same name (ignoring case) is listed, the one a lookup finds. Every cluster chain is
 * bounded by what it must hold (a file's size, a folder's 2 MiB).
 */
import { Qcow2Error } from '../../errors.ts';
import type { GuestFileEntry } from '../../model.ts';
import type { ByteRange, GuestFilesystem, VolumeBytes } from '../filesystem.ts';
import { BOOT_SECTOR_BYTES, clusterOffset, parseBootSector, type FatGeometry } from './boot-sector.ts';
import { FatTable, type ClusterRun } from './fat-table.ts';
import { nameKey } from './fat-names.ts';
import { MAX_FOLDER_BYTES, parseFolder, type FatFolder, type FatFolderEntry } from './folder-entries.ts';

/** Parsed folders kept, by their count of entries (a hostile volume can fill many 65536-entry folders). */
const MAX_CACHED_FOLDER_ENTRIES = 100_000;
const MAX_CACHED_FILES = 32;

/** A folder as read: its entries, deduplicated by name, and where its bytes are. */
interface LoadedFolder extends FatFolder {
  /** The folder's first cluster (the root: geometry.rootCluster, 0 on FAT12/16). */
  cluster: number;
  byKey: Map<string, FatFolderEntry>;
  extents: ByteRange[];
}

/** Where a path leads: the root (entry null), or an entry with its stored path and the first cluster of the folder it is in. */
interface Resolved {
  path: string;
  entry: FatFolderEntry | null;
  parentCluster: number;
}

/** A file's clusters, with the file offset each run starts at. */
interface FileLayout {
  runs: ClusterRun[];
  starts: number[];
}

export class FatFilesystem implements GuestFilesystem {
  readonly kind = 'fat';
  readonly label?: string;
  private readonly volume: VolumeBytes;
  private readonly geometry: FatGeometry;
  private readonly table: FatTable;
  private readonly folders = new Map<number, LoadedFolder>();
  private cachedFolderEntries = 0;
  private readonly files = new Map<string, FileLayout>();

  private constructor(volume: VolumeBytes, geometry: FatGeometry, table: FatTable, root: LoadedFolder) {
    this.volume = volume;
    this.geometry = geometry;
    this.table = table;
    const label = root.volumeLabel ?? geometry.bootLabel;
    if (label !== undefined && label !== 'NO NAME') this.label = label;
    this.remember(root);
  }

  static async open(volume: VolumeBytes): Promise<FatFilesystem> {
    if (volume.length < BOOT_SECTOR_BYTES) throw new Qcow2Error('FILESYSTEM_CORRUPT', `FAT boot sector: a volume of ${volume.length} bytes`);
    const sector = new Uint8Array(BOOT_SECTOR_BYTES);
    await volume.read(sector, 0);
    const geometry = parseBootSector(sector, volume.length);
    const table = new FatTable(volume, geometry);
    const root = await loadFolder(volume, geometry, table, geometry.rootCluster, 'the root folder');
    return new FatFilesystem(volume, geometry, table, root);
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    const resolved = await this.resolve(path);
    if (resolved.entry !== null && !resolved.entry.isDirectory) throw new Qcow2Error('NOT_A_DIRECTORY', `${resolved.path} is a file, not a folder`);
    const folder = await this.folder(resolved);
    return [...folder.byKey.values()].map((entry) => toGuestEntry(entry, childPath(resolved.path, entry.name)));
  }

  async stat(path: string): Promise<GuestFileEntry> {
    const resolved = await this.resolve(path);
    if (resolved.entry === null) return { name: '', path: '/', kind: 'directory', size: 0, mtimeMs: null };
    return toGuestEntry(resolved.entry, resolved.path);
  }

  async read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new Qcow2Error('INVALID_ARGUMENT', `offset ${offset} is not a byte offset`);
    const resolved = await this.resolve(path);
    const entry = resolved.entry;
    if (entry === null || entry.isDirectory) throw new Qcow2Error('IS_A_DIRECTORY', `${resolved.path} is a folder, not a file`);
    const length = Math.max(0, Math.min(buffer.length, entry.size - offset));
    if (length === 0) return 0;
    const layout = await this.fileLayout(entry, resolved.path);
    const { clusterBytes } = this.geometry;
    let done = 0;
    let runIndex = findRun(layout.starts, offset);
    while (done < length) {
      const run = layout.runs[runIndex] as ClusterRun;
      const runStart = layout.starts[runIndex] as number;
      const within = offset + done - runStart;
      const take = Math.min(length - done, run.count * clusterBytes - within);
      await this.volume.read(buffer.subarray(done, done + take), clusterOffset(this.geometry, run.cluster) + within);
      done += take;
      runIndex++;
    }
    return length;
  }

  /** A file's clusters (whole clusters, as many as its size needs), or a folder's, in bytes from the volume's start. */
  async extents(path: string): Promise<ByteRange[]> {
    const resolved = await this.resolve(path);
    const entry = resolved.entry;
    if (entry === null || entry.isDirectory) return (await this.folder(resolved)).extents;
    const layout = await this.fileLayout(entry, resolved.path);
    return runsToRanges(this.geometry, layout.runs);
  }

  close(): Promise<void> {
    this.folders.clear();
    this.files.clear();
    return Promise.resolve();
  }

  /** Follows a volume-relative path from the root, entering each folder on the way (and checking it belongs there). */
  private async resolve(path: string): Promise<Resolved> {
    const parts = path.split('/').filter((part) => part !== '');
    let current: Resolved = { path: '/', entry: null, parentCluster: this.geometry.rootCluster };
    for (const part of parts) {
      if (current.entry !== null && !current.entry.isDirectory) throw new Qcow2Error('NOT_A_DIRECTORY', `${current.path} is a file, not a folder`);
      const folder = await this.folder(current);
      const key = nameKey(part);
      const entry = folder.byKey.get(key) ?? [...folder.byKey.values()].find((candidate) => nameKey(candidate.shortName) === key);
      if (entry === undefined) throw new Qcow2Error('NOT_FOUND', `${childPath(current.path, part)}: no such file or folder`);
      current = { path: childPath(current.path, entry.name), entry, parentCluster: folder.cluster };
    }
    return current;
  }

  /** The folder a resolved path names (the root when entry is null), read or from the cache; its ".." must name the folder it was found in. */
  private async folder(resolved: Resolved): Promise<LoadedFolder> {
    if (resolved.entry?.damage !== undefined) throw new Qcow2Error('FILESYSTEM_CORRUPT', resolved.entry.damage);
    const { rootCluster } = this.geometry;
    const cluster = resolved.entry === null ? rootCluster : resolved.entry.firstCluster;
    let folder = this.folders.get(cluster);
    if (folder === undefined) {
      folder = await loadFolder(this.volume, this.geometry, this.table, cluster, `folder ${resolved.path}`);
      this.remember(folder);
    }
    if (resolved.entry !== null) {
      // ".." names the root as 0, also on FAT32 (some writers put the root's cluster there).
      const parent = folder.parentCluster;
      const fits = resolved.parentCluster === rootCluster ? parent === 0 || parent === rootCluster : parent === resolved.parentCluster;
      if (!fits) throw new Qcow2Error('FILESYSTEM_CORRUPT', `folder ${resolved.path}: its ".." entry names cluster ${parent ?? 'none'}, not the folder it is in (cluster ${resolved.parentCluster})`);
    }
    return folder;
  }

  private remember(folder: LoadedFolder): void {
    this.folders.set(folder.cluster, folder);
    this.cachedFolderEntries += folder.entries.length;
    for (const [cluster, cached] of this.folders) {
      if (this.cachedFolderEntries <= MAX_CACHED_FOLDER_ENTRIES || cached === folder) break;
      this.folders.delete(cluster);
      this.cachedFolderEntries -= cached.entries.length;
    }
  }

  private async fileLayout(entry: FatFolderEntry, path: string): Promise<FileLayout> {
    const key = `${entry.firstCluster}:${entry.size}`;
    const cached = this.files.get(key);
    if (cached !== undefined) return cached;
    const clusters = Math.ceil(entry.size / this.geometry.clusterBytes);
    if (clusters > 0 && entry.firstCluster === 0) throw new Qcow2Error('FILESYSTEM_CORRUPT', `file ${path}: ${entry.size} bytes but no clusters`);
    const runs = await this.table.fileChain(entry.firstCluster, clusters, `file ${path}`);
    const starts: number[] = [];
    let position = 0;
    for (const run of runs) {
      starts.push(position);
      position += run.count * this.geometry.clusterBytes;
    }
    const layout = { runs, starts };
    if (this.files.size >= MAX_CACHED_FILES) {
      const oldest = this.files.keys().next().value;
      if (oldest !== undefined) this.files.delete(oldest);
    }
    this.files.set(key, layout);
    return layout;
  }
}

/** Reads and parses a folder, checking what keeps the folders a tree (see the module comment). */
async function loadFolder(volume: VolumeBytes, geometry: FatGeometry, table: FatTable, cluster: number, what: string): Promise<LoadedFolder> {
  const isRoot = cluster === geometry.rootCluster;
  let extents: ByteRange[];
  if (isRoot && geometry.rootRegion !== null) extents = [geometry.rootRegion];
  else {
    const runs = await table.wholeChain(cluster, Math.min(Math.ceil(MAX_FOLDER_BYTES / geometry.clusterBytes), geometry.clusterCount), what);
    extents = runsToRanges(geometry, runs);
  }
  const bytes = new Uint8Array(extents.reduce((sum, range) => sum + range.length, 0));
  let filled = 0;
  for (const range of extents) {
    await volume.read(bytes.subarray(filled, filled + range.length), range.offset);
    filled += range.length;
  }
  const parsed = parseFolder(bytes, geometry.width);
  const byKey = new Map<string, FatFolderEntry>();
  const subfolderClusters = new Set<number>();
  for (const entry of parsed.entries) {
    const key = nameKey(entry.name);
    if (byKey.has(key)) continue;
    // A subfolder that cannot be a folder is listed, and refused only when entered: one bad entry
    // hid all its siblings (files audit 6), and a folder copy goes past what it cannot read.
    if (entry.isDirectory) {
      if (entry.firstCluster === geometry.rootCluster || !table.isCluster(entry.firstCluster)) {
        byKey.set(key, { ...entry, damage: `${what}: subfolder ${entry.name} starts at cluster ${entry.firstCluster}, which is not a folder's` });
        continue;
      }
      if (subfolderClusters.has(entry.firstCluster)) {
        byKey.set(key, { ...entry, damage: `${what}: two subfolders start at cluster ${entry.firstCluster}` });
        continue;
      }
      subfolderClusters.add(entry.firstCluster);
    }
    byKey.set(key, entry);
  }
  return { ...parsed, cluster, byKey, extents };
}

function toGuestEntry(entry: FatFolderEntry, path: string): GuestFileEntry {
  const guestEntry: GuestFileEntry = { name: entry.name, path, kind: entry.isDirectory ? 'directory' : 'file', size: entry.size, mtimeMs: entry.mtimeMs };
  if (entry.isDirectory) guestEntry.folderId = String(entry.firstCluster);
  return guestEntry;
}

function childPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

function runsToRanges(geometry: FatGeometry, runs: ClusterRun[]): ByteRange[] {
  return runs.map((run) => ({ offset: clusterOffset(geometry, run.cluster), length: run.count * geometry.clusterBytes }));
}

/** The index of the run holding file offset `offset` (starts ascend from 0). */
function findRun(starts: number[], offset: number): number {
  let low = 0;
  let high = starts.length - 1;
  while (low < high) {
    const middle = Math.ceil((low + high) / 2);
    if ((starts[middle] as number) <= offset) low = middle;
    else high = middle - 1;
  }
  return low;
}
