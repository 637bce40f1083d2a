/** Every filesystem reader, in the order volumes are probed. Each reader adds its one line here. */
import { BTRFS_READER } from './btrfs/btrfs-filesystem.ts';
import { extReader } from './ext/ext-filesystem.ts';
import type { FilesystemReader } from './filesystem.ts';
import { FAT_READER } from './fat/fat-reader.ts';
import { NTFS_READER } from './ntfs/ntfs-reader.ts';
import { XFS_READER } from './xfs/xfs-filesystem.ts';

export const FILESYSTEM_READERS: readonly FilesystemReader[] = [extReader, FAT_READER, NTFS_READER, XFS_READER, BTRFS_READER];
