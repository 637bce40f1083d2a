/**
 * The files of one state of a disk (its current state or a snapshot's), as the CLI (`ls`,
 * `files-diff`, `copy-out`) and the app's workers see them: the volumes at the root when the disk
 * has a partition table, each volume's filesystem below. Read-only: nothing here writes the image.
 */

import { Qcow2Error } from '../errors.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { openGuestReader, type GuestReaderOptions } from '../image/image-format.ts';
import { findSnapshot, Qcow2Image, Qcow2StateView, type SnapshotRef } from '../image/image.ts';
import { VOLUME_CONTENT_NAMES, type GuestFileEntry, type GuestVolumeInfo } from '../model.ts';
import type { ByteRange, ChangedBytes, FilesystemReader, GuestFilesystem, UnchangedFolder } from './filesystem.ts';
import { FILESYSTEM_READERS } from './filesystems.ts';
import { normalizePath, pathParts } from './paths.ts';
import { stateIdentity } from './state-identity.ts';
import { guestRangesOf } from './volume-ranges.ts';
import { CachedGuestBytes } from './volume-bytes.ts';
import type { VolumeUnlockOptions } from './encrypted-volumes.ts';
import { findVolumes, type FoundVolume } from './volumes.ts';

export interface StateFiles {
  /** The state's volumes (one with name "" for a whole-disk filesystem). */
  readonly volumes: readonly GuestVolumeInfo[];
  /** A folder's entries; "/" lists the volumes as folders when the disk has a partition table. */
  list(path: string): Promise<GuestFileEntry[]>;
  stat(path: string): Promise<GuestFileEntry>;
  /** Up to buffer.length bytes of a file's content from offset; the count read (0 at the end). */
  read(path: string, buffer: Uint8Array, offset: number): Promise<number>;
  /** Where a file's content lies in the guest disk (guest offsets), or null when the filesystem reader cannot say. */
  extents(path: string): Promise<ByteRange[] | null>;
  /** GuestFilesystem.dataRanges: where a file may hold other than zeros (file offsets), or null. */
  dataRanges?(path: string): Promise<ByteRange[] | null>;
  /**
   * A volume's folder that reads the same in `earlier`, another state of this disk, by `changed`
   * (guest offsets), or null: GuestFilesystem.unchangedFolder, for files-diff (which checks the
   * volume lies at the same place with the same length in both states).
   */
  unchangedFolder?(path: string, changed: ChangedBytes, earlier: StateFiles): Promise<UnchangedFolder | null>;
  close(): Promise<void>;
}

/** The state `current`, or a snapshot's by name or id. */
export const CURRENT_STATE = 'current';

/** Deeper than any real guest's folders (Linux's 4096-byte paths hold ~2048 at most, of one-letter names). */
export const MAX_FOLDER_DEPTH = 1024;

export interface StateFilesOptions extends GuestReaderOptions {
  /** Passphrases for encrypted volumes inside the guest (LUKS), and the job that waits while one is tried. */
  volumes?: VolumeUnlockOptions;
}

/**
 * Opens the files of one state of the image at imagePath, read-only: `state` is "current" or a
 * snapshot's name or id (a snapshot named "current" is reached by its id). Encrypted disks need
 * options.passphrase; encrypted volumes inside the guest are read where options.volumes has theirs.
 * Close the result to release the image.
 */
export async function openStateFiles(imagePath: string, state: SnapshotRef, options: StateFilesOptions = {}): Promise<StateFiles> {
  const { volumes, ...imageOptions } = options;
  const { reader, snapshot } = openStateReader(imagePath, state, imageOptions);
  try {
    return await stateFilesOf(reader, FILESYSTEM_READERS, volumes, stateIdentity(reader, snapshot));
  } catch (error) {
    reader.close();
    throw error;
  }
}

function openStateReader(imagePath: string, state: SnapshotRef, options: GuestReaderOptions): { reader: GuestReader; snapshot: SnapshotEntry | null } {
  const image = openGuestReader(imagePath, undefined, options);
  if (state === CURRENT_STATE) return { reader: image, snapshot: null };
  try {
    if (!(image instanceof Qcow2Image)) throw new Qcow2Error('INVALID_ARGUMENT', `${imagePath} is not a qcow2 image: it has no snapshots`);
    const snapshot = findSnapshot(image, state);
    const view = image.snapshotReader(snapshot);
    return { reader: new Qcow2StateView(image, view.l1, view.virtualSize, () => image.close()), snapshot };
  } catch (error) {
    image.close();
    throw error;
  }
}

/**
 * The files of the guest bytes `reader` gives (an open image, a snapshot's view, a raw file);
 * closing the result closes the reader.
 */
export async function stateFilesOf(reader: GuestReader, readers: readonly FilesystemReader[] = FILESYSTEM_READERS, unlock: VolumeUnlockOptions = {}, identity: string | null = null): Promise<StateFiles> {
  const guest = new CachedGuestBytes(reader, identity);
  const found = await findVolumes(guest, readers, unlock);
  return new OpenStateFiles(reader, found.partitioned, found.volumes);
}

interface Located {
  volume: FoundVolume;
  /** The volume's folder in the state ("/1"), "" for a whole-disk filesystem. */
  prefix: string;
  /** The path inside the volume. */
  inner: string;
}

class OpenStateFiles implements StateFiles {
  readonly volumes: readonly GuestVolumeInfo[];
  private closed = false;
  private readonly reader: GuestReader;
  private readonly partitioned: boolean;
  private readonly found: readonly FoundVolume[];

  constructor(reader: GuestReader, partitioned: boolean, found: readonly FoundVolume[]) {
    this.reader = reader;
    this.partitioned = partitioned;
    this.found = found;
    this.volumes = found.map((volume) => volume.info);
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    this.assertOpen();
    // A folder inside itself that a reader did not see (every walk of a damaged filesystem ends).
    if (pathParts(path).length > MAX_FOLDER_DEPTH) throw new Qcow2Error('FILESYSTEM_CORRUPT', `${normalizePath(path).slice(0, 200)}… lies more than ${MAX_FOLDER_DEPTH} folders deep: a folder inside itself? (the filesystem is damaged)`);
    if (this.partitioned && pathParts(path).length === 0) return this.found.map((volume) => volumeEntry(volume.info));
    const located = this.locate(path);
    const entries = await filesystemOf(located.volume).list(located.inner);
    return entries.map((entry) => withPrefix(entry, located.prefix));
  }

  async stat(path: string): Promise<GuestFileEntry> {
    this.assertOpen();
    const parts = pathParts(path);
    if (this.partitioned && parts.length === 0) return { name: '', path: '/', kind: 'directory', size: 0, mtimeMs: null };
    const located = this.locate(path);
    if (this.partitioned && parts.length === 1) return volumeEntry(located.volume.info);
    return withPrefix(await filesystemOf(located.volume).stat(located.inner), located.prefix);
  }

  read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    this.assertOpen();
    if (this.partitioned && pathParts(path).length <= 1) return Promise.reject(new Qcow2Error('IS_A_DIRECTORY', `${normalizePath(path)} is a folder`));
    const located = this.locate(path);
    return filesystemOf(located.volume).read(located.inner, buffer, offset);
  }

  async extents(path: string): Promise<ByteRange[] | null> {
    this.assertOpen();
    if (this.partitioned && pathParts(path).length <= 1) throw new Qcow2Error('IS_A_DIRECTORY', `${normalizePath(path)} is a folder`);
    const located = this.locate(path);
    const filesystem = filesystemOf(located.volume);
    const ranges = filesystem.extents ? await filesystem.extents(located.inner) : null;
    return ranges === null ? null : ranges.flatMap((range) => guestRangesOf(located.volume.info, range.offset, range.length));
  }

  async dataRanges(path: string): Promise<ByteRange[] | null> {
    this.assertOpen();
    if (this.partitioned && pathParts(path).length <= 1) throw new Qcow2Error('IS_A_DIRECTORY', `${normalizePath(path)} is a folder`);
    const located = this.locate(path);
    const filesystem = filesystemOf(located.volume);
    return filesystem.dataRanges ? filesystem.dataRanges(located.inner) : null;
  }

  async unchangedFolder(path: string, changed: ChangedBytes, earlier: StateFiles): Promise<UnchangedFolder | null> {
    this.assertOpen();
    if (!(earlier instanceof OpenStateFiles) || (this.partitioned && pathParts(path).length === 0)) return null;
    earlier.assertOpen();
    const located = this.locate(path);
    const filesystem = filesystemOf(located.volume);
    const earlierFilesystem = filesystemOf(earlier.locate(path).volume);
    if (!filesystem.unchangedFolder) return null;
    const volume = located.volume.info;
    // Asked per inode and block run on files-diff's hot path: a volume in one piece maps by addition, without arrays.
    const changedInVolume: ChangedBytes =
      volume.segments === undefined ? (offset, length) => changed(volume.offset + offset, length) : (offset, length) => guestRangesOf(volume, offset, length).some((range) => changed(range.offset, range.length));
    const folder = await filesystem.unchangedFolder(located.inner, changedInVolume, earlierFilesystem);
    if (folder === null || located.prefix === '') return folder;
    return { entries: folder.entries.map((entry) => withPrefix(entry, located.prefix)), flags: folder.flags };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      for (const volume of this.found) await volume.filesystem?.close();
    } finally {
      this.reader.close();
    }
  }

  protected locate(path: string): Located {
    const parts = pathParts(path);
    const whole = this.found[0];
    if (!this.partitioned && whole) return { volume: whole, prefix: '', inner: `/${parts.join('/')}` };
    const volume = this.found.find((candidate) => candidate.info.name === parts[0]);
    if (!volume) throw new Qcow2Error('NOT_FOUND', `There is no volume /${parts[0]} (the disk's volumes: ${this.found.map((each) => `/${each.info.name}`).join(', ') || 'none'})`);
    return { volume, prefix: `/${volume.info.name}`, inner: `/${parts.slice(1).join('/')}` };
  }

  protected assertOpen(): void {
    if (this.closed) throw new Qcow2Error('INVALID_ARGUMENT', 'The state\'s files are closed');
  }
}

function filesystemOf(volume: FoundVolume): GuestFilesystem {
  if (volume.filesystem) return volume.filesystem;
  if (volume.failure) throw volume.failure;
  const name = volume.info.name === '' ? 'The disk' : `Volume /${volume.info.name}`;
  if (volume.info.holds !== undefined) throw new Qcow2Error('NO_FILESYSTEM', `${name} is ${VOLUME_CONTENT_NAMES[volume.info.holds]}: it holds no files Cowbell can list`);
  const type = volume.info.partitionType === undefined ? '' : ` (partition type ${volume.info.partitionType})`;
  throw new Qcow2Error('NO_FILESYSTEM', `${name} holds no filesystem Cowbell can read${type}`);
}

function volumeEntry(info: GuestVolumeInfo): GuestFileEntry {
  return { name: info.name, path: `/${info.name}`, kind: 'directory', size: 0, mtimeMs: null };
}

function withPrefix(entry: GuestFileEntry, prefix: string): GuestFileEntry {
  if (prefix === '') return entry;
  const prefixed = { ...entry, path: entry.path === '/' ? prefix : prefix + entry.path, name: entry.path === '/' ? prefix.slice(1) : entry.name };
  if (entry.folderId !== undefined) prefixed.folderId = `${prefix}:${entry.folderId}`;
  return prefixed;
}

/**
 * A path as a person types it, in the spelling the listings use: a name with a backslash is
 * listed with it doubled (linux-names.ts guestFileName), so `/etc/a\x2db` is tried as `/etc/a\\x2db`
 * when nothing has the spelling typed (files audit 2: such a file could not be named at all).
 */
export async function typedGuestPath(files: StateFiles, path: string): Promise<string> {
  try {
    await files.stat(path);
    return path;
  } catch (error) {
    if (!(error instanceof Qcow2Error && error.code === 'NOT_FOUND') || !path.includes('\\')) throw error;
    const listed = path.replaceAll('\\', '\\\\');
    try {
      await files.stat(listed);
      return listed;
    } catch {
      throw error;
    }
  }
}
