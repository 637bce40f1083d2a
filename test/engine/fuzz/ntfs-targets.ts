/** What the fuzzer runs on a damaged NTFS volume: the NTFS reader's walk (filesystem-walk.ts). */
import { NTFS_READER } from '../../../src/shared/qcow2/files/ntfs/ntfs-reader.ts';
import { filesystemWalkTarget } from './filesystem-walk.ts';
import type { FuzzTarget } from './protocol.ts';

export const NTFS_TARGETS: FuzzTarget[] = [filesystemWalkTarget('ntfs-walk', NTFS_READER)];
