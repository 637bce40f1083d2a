/**
 * The files of one state of a disk (its current state or a snapshot's), as the CLI (`ls`,
 * `files-diff`, `copy-out`) and the app's workers see them: the volumes at the root when the disk
 * has a partition table, each volume's filesystem below. Read-only: nothing here writes the image.
 */
import type { GuestFileEntry, GuestVolumeInfo } from '../model.ts';
import type { ByteRange } from './filesystem.ts';

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
  close(): Promise<void>;
}
