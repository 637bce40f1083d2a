/** A file's content as runs of volume blocks (ext, XFS): the map and the read through it. */
import type { ByteRange, VolumeBytes } from './filesystem.ts';

/** `count` blocks of the file from block `fileBlock` lie at volume block `volumeBlock`. */
export interface BlockRun {
  fileBlock: number;
  volumeBlock: number;
  count: number;
}

export interface FileBlockMap {
  blockBytes: number;
  /** In file order, not overlapping; file blocks in no run read as zeros. */
  runs: BlockRun[];
  /** The volume blocks read to find the runs (extent tree nodes below the inode, indirect blocks). */
  nodeBlocks: number[];
}

/**
 * A file's bytes from `offset` into `target` straight from the volume through its block runs
 * (libext2fs would read them one block at a time through its WebAssembly heap); holes are zeros.
 */
export async function readMapped(volume: VolumeBytes, map: FileBlockMap, target: Uint8Array, offset: number): Promise<void> {
  const { blockBytes, runs } = map;
  const end = offset + target.length;
  /** Bytes of target up to this file offset are set. */
  let filled = offset;
  let low = 0;
  let high = runs.length;
  // The first run that ends after `offset`.
  while (low < high) {
    const middle = (low + high) >>> 1;
    const run = runs[middle] as BlockRun;
    if ((run.fileBlock + run.count) * blockBytes <= offset) low = middle + 1;
    else high = middle;
  }
  for (let index = low; index < runs.length; index++) {
    const run = runs[index] as BlockRun;
    const runStart = run.fileBlock * blockBytes;
    if (runStart >= end) break;
    const from = Math.max(offset, runStart);
    const to = Math.min(end, runStart + run.count * blockBytes);
    // Only the holes are zeroed: filling the whole target first would write every byte twice.
    target.fill(0, filled - offset, from - offset);
    await volume.read(target.subarray(from - offset, to - offset), run.volumeBlock * blockBytes + (from - runStart));
    filled = to;
  }
  target.fill(0, filled - offset);
}

/** Adds a range after the last of `ranges` (in order), joined to it where they meet. */
export function appendRange(ranges: ByteRange[], offset: number, length: number): void {
  const last = ranges.at(-1);
  if (last !== undefined && last.offset + last.length === offset) last.length += length;
  else ranges.push({ offset, length });
}
