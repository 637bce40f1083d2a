/** What the fuzzer runs on a damaged XFS volume: the XFS reader's walk (filesystem-walk.ts). */
import { XFS_READER } from '../../../src/shared/qcow2/files/xfs/xfs-filesystem.ts';
import { filesystemWalkTarget } from './filesystem-walk.ts';
import type { FuzzTarget } from './protocol.ts';

export const XFS_TARGETS: FuzzTarget[] = [filesystemWalkTarget('xfs-walk', XFS_READER)];
