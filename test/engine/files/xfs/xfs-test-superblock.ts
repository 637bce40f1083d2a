/** An XFS version 5 superblock as the reader holds it, for tests that build logs and volumes by hand: 64 blocks of 4 KiB, 512-byte inodes. */
import type { XfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';

export function testSuperblock(uuid: Uint8Array, overrides: Partial<XfsSuperblock> = {}): XfsSuperblock {
  return {
    version: 5,
    blockBytes: 4096,
    dataBlocks: 64,
    groupBlocks: 64,
    groupBlockBits: 6,
    groupCount: 1,
    inodeBytes: 512,
    inodesPerBlockBits: 3,
    rootInode: 128,
    folderBlockBytes: 4096,
    hasFileType: true,
    bigTime: true,
    largeExtentCounts: false,
    asciiCaseInsensitive: false,
    log: null,
    logIncompatible: 0,
    uuid,
    metaUuid: uuid,
    inodeAlignmentBlocks: 8,
    label: '',
    ...overrides,
  };
}
