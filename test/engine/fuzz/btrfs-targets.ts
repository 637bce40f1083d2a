/** What the fuzzer runs on a damaged btrfs volume: the btrfs reader's walk (filesystem-walk.ts). */
import { BTRFS_READER } from '../../../src/shared/qcow2/files/btrfs/btrfs-filesystem.ts';
import { filesystemWalkTarget } from './filesystem-walk.ts';
import type { FuzzTarget } from './protocol.ts';

export const BTRFS_TARGETS: FuzzTarget[] = [filesystemWalkTarget('btrfs-walk', BTRFS_READER)];
