/**
 * A read-only NTFS volume as a GuestFilesystem: paths resolved case-insensitively through the
 * directory indexes, entries described from each file's MFT record ($STANDARD_INFORMATION for the
 * modification time, the unnamed $DATA for size and content, $REPARSE_POINT for links).
 *
 * Listings leave out DOS 8.3 aliases (the Win32/POSIX name stands for the file) and the root's
 * metafiles ($MFT, $LogFile, $Bitmap, … records below 16), as Windows Explorer and ntfsls do: they
 * are the filesystem's own structures, not the guest's files, and $LogFile or $Bitmap would show as
 * changed in every files-diff. They still resolve by path. A child whose record is damaged still
 * lists from its folder's index (see entryFromIndex); its stat and read fail FILESYSTEM_CORRUPT.
 */
import { Qcow2Error } from '../../errors.ts';
import type { GuestFileEntry } from '../../model.ts';
import type { ByteRange, GuestFilesystem, VolumeBytes } from '../filesystem.ts';
import type { AttributeStream } from './attribute-stream.ts';
import { FILE_NAME_IS_DIRECTORY, type FileName, NAMESPACE, parseStandardInformation } from './attribute-values.ts';
import { corrupt, decodeUtf16 } from './bytes.ts';
import { type DirectoryEntry, DIRECTORY_INDEX_NAME, readDirectoryIndex } from './directory-index.ts';
import { ATTRIBUTE, FILE_ATTRIBUTE, referenceRecord, referenceSequence } from './mft-record.ts';
import { FIRST_USER_RECORD, MFT_RECORD, type NtfsFile, NtfsVolume } from './ntfs-volume.ts';
import { INTERIX_MAX_SIZE, interixTarget, isInterixSymlinkHeader, parseReparsePoint } from './reparse.ts';
import { loadUpcase, type UpcaseName } from './upcase-table.ts';
import { WOF_REPARSE_TAG, WOF_STREAM_NAME, wofFormat, WofContent } from './wof.ts';

const DIRECTORY_CACHE_SIZE = 64;
/** Reparse data is at most 16 KiB. */
const MAX_REPARSE_SIZE = 16 * 1024;

/** A regular file's content: its unnamed $DATA, or what Windows compressed it into (wof.ts). */
type FileContent = Pick<AttributeStream, 'read' | 'extents'> & { dataRanges?: () => ByteRange[] | null };

/** What a path names: its file, the entry shown for it, and (for a file) where its content is. */
interface ResolvedFile {
  file: NtfsFile;
  entry: GuestFileEntry;
  /** The content of a regular file (null for folders and links). */
  content: FileContent | null;
  /** Why the content cannot be read even though the file lists (a reparse point keeping it elsewhere), said after the path. */
  contentElsewhere: string | null;
}

/** A directory's index entries, and the same by upper-cased name for lookups. */
interface IndexedDirectory {
  entries: DirectoryEntry[];
  byUpcaseName: Map<string, DirectoryEntry[]>;
}

function splitPath(path: string): string[] {
  const parts = path.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new Qcow2Error('INVALID_ARGUMENT', `NTFS: ".." in the path ${path}`);
  return parts;
}

function joinPath(parent: string, name: string): string {
  return parent === '/' ? `/${name}` : `${parent}/${name}`;
}

export class NtfsFilesystem implements GuestFilesystem {
  readonly kind = 'ntfs' as const;
  readonly label?: string;
  readonly caution?: string;
  private readonly directories = new Map<number, IndexedDirectory>();

  private readonly volume: NtfsVolume;
  private readonly upcase: UpcaseName;

  private constructor(volume: NtfsVolume, upcase: UpcaseName, label: string | undefined, dirty: boolean) {
    this.volume = volume;
    this.upcase = upcase;
    if (label !== undefined) this.label = label;
    // NTFS keeps its latest changes in $LogFile until Windows writes them home; Cowbell does not
    // replay that log (ext's journal it does), so a volume saved while mounted is read as its
    // structures lay — said, as ntfs-3g says it and mounts such a volume read-only.
    if (dirty) this.caution = 'Windows had this volume mounted (it was not shut down cleanly, or the snapshot was taken while it ran): changes it had not yet written home may be missing';
  }

  static async open(bytes: VolumeBytes): Promise<NtfsFilesystem> {
    const volume = await NtfsVolume.open(bytes);
    const root = await volume.file(MFT_RECORD.root);
    if (!root.record.isDirectory) throw corrupt('the root (MFT record 5) is not a directory');
    return new NtfsFilesystem(volume, await loadUpcase(volume), await readLabel(volume), await isDirty(volume));
  }

  async list(path: string): Promise<GuestFileEntry[]> {
    const resolved = await this.resolve(path);
    if (resolved.entry.kind !== 'directory') throw new Qcow2Error('NOT_A_DIRECTORY', `NTFS: ${resolved.entry.path} is not a folder`);
    const recordNumber = resolved.file.record.recordNumber;
    const listed = (await this.directoryEntries(resolved.file)).filter(({ reference, fileName }) => {
      const childNumber = referenceRecord(reference);
      if (fileName.namespace === NAMESPACE.dos || childNumber === recordNumber) return false;
      return !(recordNumber === MFT_RECORD.root && childNumber < FIRST_USER_RECORD && fileName.name.startsWith('$'));
    });
    // Described in MFT record order, the MFT's own, and returned in the index's (name) order: a large
    // folder's records looked up by name would be read from all over the MFT.
    const entries = new Array<GuestFileEntry>(listed.length);
    const byRecord = listed.map((entry, index) => ({ ...entry, index })).sort((a, b) => referenceRecord(a.reference) - referenceRecord(b.reference));
    for (const { reference, fileName, index } of byRecord) {
      const childPath = joinPath(resolved.entry.path, fileName.name);
      entries[index] = await this.describe(reference, fileName.name, childPath).then(
        (child) => child.entry,
        (error: unknown) => entryFromIndex(error, fileName, childPath),
      );
    }
    return entries;
  }

  async stat(path: string): Promise<GuestFileEntry> {
    return (await this.resolve(path)).entry;
  }

  async read(path: string, buffer: Uint8Array, offset: number): Promise<number> {
    const { entry, content, contentElsewhere } = await this.resolve(path);
    if (entry.kind === 'directory') throw new Qcow2Error('IS_A_DIRECTORY', `NTFS: ${entry.path} is a folder`);
    if (entry.kind !== 'file') throw new Qcow2Error('NOT_A_FILE', `NTFS: ${entry.path} is a link or special file, not a regular file`);
    if (contentElsewhere !== null) throw new Qcow2Error('FILESYSTEM_UNSUPPORTED', `NTFS: ${entry.path} ${contentElsewhere}`);
    if (content === null) return 0;
    return content.read(buffer, offset, entry.path);
  }

  async dataRanges(path: string): Promise<ByteRange[] | null> {
    const { entry, content, contentElsewhere } = await this.resolve(path);
    if (entry.kind !== 'file' || contentElsewhere !== null) return null;
    return content === null ? [] : (content.dataRanges?.() ?? null);
  }

  async extents(path: string): Promise<ByteRange[] | null> {
    const { entry, content } = await this.resolve(path);
    if (entry.kind !== 'file') return null;
    return content === null ? [] : content.extents();
  }

  async close(): Promise<void> {
    this.directories.clear();
  }

  private async directoryEntries(directory: NtfsFile): Promise<DirectoryEntry[]> {
    return (await this.indexedDirectory(directory)).entries;
  }

  private async indexedDirectory(directory: NtfsFile): Promise<IndexedDirectory> {
    const recordNumber = directory.record.recordNumber;
    const cached = this.directories.get(recordNumber);
    if (cached !== undefined) return cached;
    const entries = await readDirectoryIndex(this.volume, directory);
    const byUpcaseName = new Map<string, DirectoryEntry[]>();
    for (const entry of entries) {
      const key = this.upcase(entry.fileName.name);
      const same = byUpcaseName.get(key);
      if (same === undefined) byUpcaseName.set(key, [entry]);
      else same.push(entry);
    }
    const indexed = { entries, byUpcaseName };
    if (this.directories.size >= DIRECTORY_CACHE_SIZE) this.directories.delete(this.directories.keys().next().value as number);
    this.directories.set(recordNumber, indexed);
    return indexed;
  }

  private async resolve(path: string): Promise<ResolvedFile> {
    let current = await this.describe(BigInt(MFT_RECORD.root), '', '/');
    for (const part of splitPath(path)) {
      if (current.entry.kind !== 'directory') throw new Qcow2Error('NOT_A_DIRECTORY', `NTFS: ${current.entry.path} is not a folder`);
      const { entries, byUpcaseName } = await this.indexedDirectory(current.file);
      const matches = byUpcaseName.get(this.upcase(part)) ?? [];
      const first = matches[0];
      if (first === undefined) throw new Qcow2Error('NOT_FOUND', `NTFS: ${joinPath(current.entry.path, part)} does not exist`);
      // A DOS alias opens its file as Windows does, under the file's long name.
      const match = matches.find(({ fileName }) => fileName.name === part && fileName.namespace !== NAMESPACE.dos) ??
        matches.find(({ fileName }) => fileName.namespace !== NAMESPACE.dos) ??
        entries.find(({ reference, fileName }) => reference === first.reference && fileName.namespace !== NAMESPACE.dos) ??
        first;
      current = await this.describe(match.reference, match.fileName.name, joinPath(current.entry.path, match.fileName.name));
    }
    return current;
  }

  private async describe(reference: bigint, name: string, path: string): Promise<ResolvedFile> {
    const file = await this.volume.file(referenceRecord(reference));
    const sequence = referenceSequence(reference);
    if (sequence !== 0 && sequence !== file.record.sequenceNumber) {
      throw corrupt(`${path} refers to MFT record ${file.record.recordNumber} of sequence ${sequence}, which now holds sequence ${file.record.sequenceNumber}`);
    }
    const information = file.attributes.find((attribute) => attribute.type === ATTRIBUTE.standardInformation);
    if (information === undefined || !information.resident) throw corrupt(`${path}: no resident $STANDARD_INFORMATION`);
    const { modifiedMs, fileAttributes } = parseStandardInformation(information.value, path);
    const base = { name, path, mtimeMs: modifiedMs };
    const reparse = await this.reparsePoint(file, path);
    if (reparse !== null && reparse.isNameSurrogate) {
      const entry: GuestFileEntry = reparse.target === null ? { ...base, kind: 'other', size: 0 } : symlinkEntry(base, reparse.target);
      return { file, entry, content: null, contentElsewhere: null };
    }
    if (file.record.isDirectory) {
      if (!file.attributes.some((attribute) => attribute.type === ATTRIBUTE.indexRoot && attribute.name === DIRECTORY_INDEX_NAME)) {
        throw corrupt(`${path}: a directory record without a $I30 index`);
      }
      return { file, entry: { ...base, kind: 'directory', size: 0, folderId: String(file.record.recordNumber) }, content: null, contentElsewhere: null };
    }
    const content = this.volume.attributeStream(file, ATTRIBUTE.data, '');
    const size = content?.size ?? 0;
    if (content !== null && fileAttributes & FILE_ATTRIBUTE.system && content.unsupported === null && size <= INTERIX_MAX_SIZE && size >= 8) {
      const head = new Uint8Array(size);
      await content.read(head, 0, path);
      const target = isInterixSymlinkHeader(head) ? interixTarget(head) : null;
      if (target !== null) return { file, entry: symlinkEntry(base, target), content: null, contentElsewhere: null };
    }
    const entry: GuestFileEntry = { ...base, kind: 'file', size };
    if (reparse?.tag === WOF_REPARSE_TAG) {
      const format = wofFormat(reparse.wof ?? null);
      if ('unreadable' in format) return { file, entry, content: null, contentElsewhere: format.unreadable };
      const compressed = this.volume.attributeStream(file, ATTRIBUTE.data, WOF_STREAM_NAME);
      if (compressed === null) throw corrupt(`${path}: compressed by Windows, without its ${WOF_STREAM_NAME} stream`);
      return { file, entry, content: new WofContent(compressed, size, format, path), contentElsewhere: null };
    }
    const contentElsewhere = reparse === null ? null : `keeps its content elsewhere (reparse tag 0x${reparse.tag.toString(16)})`;
    return { file, entry, content, contentElsewhere };
  }

  private async reparsePoint(file: NtfsFile, path: string): Promise<ReturnType<typeof parseReparsePoint> | null> {
    const stream = this.volume.attributeStream(file, ATTRIBUTE.reparsePoint, '');
    if (stream === null) return null;
    if (stream.size > MAX_REPARSE_SIZE) throw corrupt(`${path}: reparse data of ${stream.size} bytes`);
    const value = new Uint8Array(stream.size);
    await stream.read(value, 0, `${path} $REPARSE_POINT`);
    return parseReparsePoint(value, path);
  }
}

/**
 * A child whose own record is damaged (a torn write in a snapshot of a running guest) still lists,
 * with what its folder's index says of it, as `dir` on Windows would; stat and read of it fail.
 */
function entryFromIndex(error: unknown, fileName: FileName, path: string): GuestFileEntry {
  if (!(error instanceof Qcow2Error) || error.code !== 'FILESYSTEM_CORRUPT') throw error;
  const isDirectory = (fileName.fileAttributes & FILE_NAME_IS_DIRECTORY) !== 0;
  const kind = isDirectory ? 'directory' : fileName.fileAttributes & FILE_ATTRIBUTE.reparsePoint ? 'other' : 'file';
  const size = kind !== 'file' || fileName.dataSize > BigInt(Number.MAX_SAFE_INTEGER) ? 0 : Number(fileName.dataSize);
  return { name: fileName.name, path, kind, size, mtimeMs: fileName.modifiedMs };
}

function symlinkEntry(base: Pick<GuestFileEntry, 'name' | 'path' | 'mtimeMs'>, target: string): GuestFileEntry {
  return { ...base, kind: 'symlink', size: new TextEncoder().encode(target).length, target };
}

/** $Volume's VOLUME_INFORMATION flags: VOLUME_IS_DIRTY (0x0001) is set while Windows has it mounted. */
async function isDirty(volume: NtfsVolume): Promise<boolean> {
  const file = await volume.file(MFT_RECORD.volume);
  const information = file.attributes.find((attribute) => attribute.type === ATTRIBUTE.volumeInformation);
  if (information === undefined || !information.resident || information.value.length < 12) return false;
  return ((information.value[10] as number) & 0x01) !== 0;
}

async function readLabel(volume: NtfsVolume): Promise<string | undefined> {
  const file = await volume.file(MFT_RECORD.volume);
  const name = file.attributes.find((attribute) => attribute.type === ATTRIBUTE.volumeName);
  if (name === undefined || !name.resident || name.value.length === 0) return undefined;
  if (name.value.length % 2 !== 0) throw corrupt('$Volume: a volume name of an odd byte count');
  return decodeUtf16(name.value);
}
