/** An XFS symlink's target: in the inode when it fits (local format), else in blocks of its own (on version 5 each extent starts with a header). */
import { readMapped } from '../block-map.ts';
import type { VolumeBytes } from '../filesystem.ts';
import { decodeGuestName } from '../linux-names.ts';
import { checksumHolds, corrupt, uint32, uint64 } from './xfs-bytes.ts';
import { xfsBlockMap } from './xfs-extents.ts';
import { FORMAT_LOCAL, type XfsInode } from './xfs-inodes.ts';
import type { XfsSuperblock } from './xfs-superblock.ts';

/** Linux's longest target (PATH_MAX less its NUL), which XFS also keeps to. */
const MAX_TARGET_BYTES = 1024;
const REMOTE_MAGIC = 0x58534c4d; // "XSLM"
const REMOTE_HEADER_BYTES = 56;

export async function readSymlink(volume: VolumeBytes, superblock: XfsSuperblock, link: XfsInode): Promise<string> {
  const { size } = link;
  if (size === 0 || size > MAX_TARGET_BYTES) throw corrupt(`the symlink in inode ${link.number} has a target of ${size} bytes`);
  if (link.format === FORMAT_LOCAL) {
    if (size > link.dataFork.length) throw corrupt(`the symlink in inode ${link.number} keeps ${size} bytes in its inode`);
    return decodeGuestName(link.dataFork.subarray(0, size));
  }
  const map = await xfsBlockMap(volume, superblock, link);
  const target = new Uint8Array(size);
  if (superblock.version === 4) {
    await readMapped(volume, map, target, 0);
    return decodeGuestName(target);
  }
  // Version 5: each extent is one buffer with a header (which bytes of the target it holds) before its part.
  const { blockBytes } = superblock;
  let done = 0;
  let nextFileBlock = 0;
  for (const run of map.runs) {
    if (done === size) break;
    const where = `the symlink in inode ${link.number}, its extent at block ${run.fileBlock}`;
    if (run.fileBlock !== nextFileBlock) throw corrupt(`${where} leaves a hole before it`);
    nextFileBlock = run.fileBlock + run.count;
    // The whole extent: its checksum covers all of it (a target needs two blocks at most).
    if (run.count > 2) throw corrupt(`${where} is ${run.count} blocks long`);
    const buffer = new Uint8Array(run.count * blockBytes);
    await volume.read(buffer, run.volumeBlock * blockBytes);
    const wanted = Math.min(buffer.length - REMOTE_HEADER_BYTES, size - done);
    if (uint32(buffer, 0) !== REMOTE_MAGIC) throw corrupt(`${where} has no symlink block signature`);
    if (!checksumHolds(buffer, 12)) throw corrupt(`${where} fails its checksum`);
    if (uint32(buffer, 4) !== done || uint32(buffer, 8) !== wanted) throw corrupt(`${where} holds bytes ${uint32(buffer, 4)}+${uint32(buffer, 8)}, not ${done}+${wanted}`);
    if (uint64(buffer, 32, 'a symlink block owner') !== link.number) throw corrupt(`${where} belongs to inode ${uint64(buffer, 32, 'an owner')}`);
    target.set(buffer.subarray(REMOTE_HEADER_BYTES, REMOTE_HEADER_BYTES + wanted), done);
    done += wanted;
  }
  if (done !== size) throw corrupt(`the symlink in inode ${link.number} has blocks for ${done} of its ${size} bytes`);
  return decodeGuestName(target);
}
