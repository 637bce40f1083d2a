/**
 * What every guest filesystem reader (ext, XFS, btrfs, FAT, NTFS) offers the rest of files/: read-only, async
 * (reads of the image are), paths relative to the volume's root.
 * A reader never trusts the bytes it reads: damaged or hostile structures throw
 * Qcow2Error('FILESYSTEM_CORRUPT'), never crash, loop or allocate without bound.
 */
import type { VolumeOpenContext } from './replay-memo.ts';
import type { GuestFileEntry, GuestFilesystemKind } from '../model.ts';

/** Guest bytes of one volume: offsets from the volume's start; reads past its end are refused by the source. */
export interface VolumeBytes {
  readonly length: number;
  /** Fills buffer with the volume's bytes from offset (synchronous underneath: the engine's readers are). */
  read(buffer: Uint8Array, offset: number): Promise<void>;
}

/** Where a file's content lies in its volume: byte ranges from the volume's start (for the content part of files-diff). */
export interface ByteRange {
  offset: number;
  length: number;
}

export interface GuestFilesystem {
  readonly kind: GuestFilesystemKind;
  readonly label?: string;
  /** What to keep in mind reading it, though it reads (a volume Windows had mounted: its latest changes may be missing). */
  readonly caution?: string;
  /** A folder's entries (without "." and ".."); `path` is volume-relative ("/" is the root). */
  list(path: string): Promise<GuestFileEntry[]>;
  /** One entry; NOT_FOUND when absent. Symlinks are not followed. */
  stat(path: string): Promise<GuestFileEntry>;
  /** Up to buffer.length bytes of a file's content from `offset`; returns the count read (0 at the end). */
  read(path: string, buffer: Uint8Array, offset: number): Promise<number>;
  /** Where the file's content lies in the volume, or null when the reader cannot say (then files-diff compares content by reading). */
  extents?(path: string): Promise<ByteRange[] | null>;
  /**
   * The parts of a file (offsets in the file) that may hold other than zeros, in order; everything
   * else reads as zeros (holes). Null when the reader cannot say. A copy skips the rest: a guest's
   * 1 TiB sparse lastlog is a few blocks of data.
   */
  dataRanges?(path: string): Promise<ByteRange[] | null>;
  /**
   * files-diff's shortcut through a folder that reads the same in `earlier`, the same volume in
   * another state (same place, same length; `changed` says which of its bytes differ between the
   * two): null when anything deciding the folder's names and the inodes they lead to differs, or
   * the reader cannot tell; else the folder's entries in this state that may still differ.
   */
  unchangedFolder?(path: string, changed: ChangedBytes, earlier: GuestFilesystem): Promise<UnchangedFolder | null>;
  close(): Promise<void>;
}

/** Whether any of `length` bytes from `offset` (of the volume, or of the guest disk at StateFiles' level) differ between two states. */
export type ChangedBytes = (offset: number, length: number) => boolean;

/** UnchangedFolder flag: the entry's metadata (kind, size, times, target) reads the same in both states. */
export const SAME_METADATA = 1;

export interface UnchangedFolder {
  /**
   * The entries files-diff must still look at, sorted by name (code points), each name once:
   * folders (for their own entries) and whatever may differ. An entry whose metadata and content
   * read the same in both states (a file whose blocks, and the blocks mapping them, are unchanged)
   * has nothing left to compare and is left out.
   */
  entries: GuestFileEntry[];
  /** Per entry, SAME_METADATA when its metadata is unchanged (0: compare it with the earlier state's). */
  flags: Uint8Array;
}

/** One filesystem kind Cowbell can read: a cheap check of its signature, then an opener. */
export interface FilesystemReader {
  readonly kind: GuestFilesystemKind;
  /** Whether the volume's first bytes carry this filesystem's signature (no deep validation). */
  probe(volume: VolumeBytes): Promise<boolean>;
  /** Opens the volume; `context` names its bytes, where what replaying its log gave may be kept (replay-memo.ts). */
  open(volume: VolumeBytes, context?: VolumeOpenContext): Promise<GuestFilesystem>;
}
