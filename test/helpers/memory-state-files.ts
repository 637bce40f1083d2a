/**
 * A state's files held in memory, for the rules of files-diff and restore apart from any filesystem
 * reader (fixture disks test those with real ext4/FAT/NTFS). Volumes by name ('' for a whole-disk
 * filesystem); each read is recorded in `reads`.
 */
import { Qcow2Error } from '../../src/shared/qcow2/errors.ts';
import type { ByteRange } from '../../src/shared/qcow2/files/filesystem.ts';
import type { StateFiles } from '../../src/shared/qcow2/files/state-files.ts';
import type { GuestFileEntry, GuestVolumeInfo } from '../../src/shared/qcow2/model.ts';

export interface MemoryFile {
  content?: string;
  mtimeMs?: number;
  target?: string;
  permissions?: number;
  /** A device, pipe or socket. */
  special?: true;
  /** Guest ranges of the content; null: the reader cannot say. */
  extents?: ByteRange[] | null;
}
export type MemoryTree = { [name: string]: MemoryFile | MemoryTree };

const isFolder = (node: MemoryFile | MemoryTree): node is MemoryTree => !('content' in node) && !('target' in node) && !('special' in node);

/** A state with one volume per key of `volumes` (name '' for a whole-disk filesystem); counts its reads. */
/** `folderTimes`: a folder's modification time by its path (1000 where not given). */
export function memoryState(
  volumes: Record<string, MemoryTree>,
  infos: Partial<Record<string, Partial<GuestVolumeInfo>>> = {},
  folderTimes: Record<string, number> = {},
): StateFiles & { reads: string[] } {
  const encoder = new TextEncoder();
  const reads: string[] = [];
  const node = (path: string): MemoryFile | MemoryTree => {
    const parts = path.split('/').filter((part) => part !== '');
    const wholeDisk = Object.hasOwn(volumes, '');
    let current: MemoryFile | MemoryTree = wholeDisk ? volumes['']! : (volumes as MemoryTree);
    for (const part of parts) {
      if (!isFolder(current) || !Object.hasOwn(current, part)) throw new Qcow2Error('NOT_FOUND', `${path}: no such file or folder`);
      current = current[part]!;
    }
    return current;
  };
  const entry = (path: string, value: MemoryFile | MemoryTree): GuestFileEntry => {
    const name = path.split('/').at(-1) ?? '';
    if (isFolder(value)) return { name, path, kind: 'directory', size: 0, mtimeMs: folderTimes[path] ?? 1000 };
    if (value.special) return { name, path, kind: 'other', size: 0, mtimeMs: value.mtimeMs ?? 1000 };
    if (value.target !== undefined) return { name, path, kind: 'symlink', size: value.target.length, mtimeMs: value.mtimeMs ?? 1000, target: value.target };
    return { name, path, kind: 'file', size: encoder.encode(value.content).length, mtimeMs: value.mtimeMs ?? 1000, ...(value.permissions === undefined ? {} : { permissions: value.permissions }) };
  };
  const join = (folder: string, name: string): string => (folder === '/' ? `/${name}` : `${folder}/${name}`);
  return {
    reads,
    volumes: Object.keys(volumes).map((name, index) => ({ name, offset: index * 1_000_000, length: 1_000_000, table: name === '' ? 'none' : 'mbr', filesystem: 'ext', ...infos[name] })),
    list: async (path) => {
      const folder = node(path);
      if (!isFolder(folder)) throw new Error('not a folder');
      return Object.entries(folder).map(([name, value]) => entry(join(path, name), value));
    },
    stat: async (path) => entry(path, node(path)),
    read: async (path, buffer, offset) => {
      reads.push(path);
      const file = node(path);
      if (isFolder(file)) throw new Error('a folder');
      const bytes = encoder.encode(file.content).subarray(offset, offset + buffer.length);
      buffer.set(bytes);
      return bytes.length;
    },
    extents: async (path) => {
      const file = node(path);
      return isFolder(file) ? null : (file.extents ?? null);
    },
    close: async () => {},
  };
}

