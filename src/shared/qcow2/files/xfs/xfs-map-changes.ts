/**
 * Block-map changes a log leaves to be finished (its unfinished bmap intents: a reflink's remap, the
 * end of a copy-on-write), applied to a file's block map as the kernel's recovery finishes them
 * after the replay: mapping a range that was a hole, or unmapping a range. Each is one extent of
 * the data fork; they are applied in the log's order.
 */
import type { BlockRun } from '../block-map.ts';
import { corrupt } from './xfs-bytes.ts';
import type { XfsBlockMap } from './xfs-extents.ts';

export interface XfsMapChange {
  inode: number;
  /** Map `count` blocks from file block `fileBlock` to volume block `volumeBlock`, or unmap them. */
  kind: 'map' | 'unmap';
  fileBlock: number;
  volumeBlock: number;
  count: number;
  /** Mapped as preallocated (unwritten) space. */
  unwritten: boolean;
}

interface Segment extends BlockRun {
  unwritten: boolean;
}

/** The map with `changes` (all of this inode's, in log order) applied: a new map, runs in file order. */
export function withMapChanges(map: XfsBlockMap, changes: readonly XfsMapChange[]): XfsBlockMap {
  let segments: Segment[] = [...map.runs.map((run) => ({ ...run, unwritten: false })), ...map.unwritten.map((run) => ({ ...run, unwritten: true }))];
  for (const change of changes) {
    const end = change.fileBlock + change.count;
    if (change.kind === 'unmap') {
      segments = segments.flatMap((segment) => cut(segment, change.fileBlock, end));
      continue;
    }
    // The kernel maps only into a hole: anything else is damage.
    if (segments.some((segment) => segment.fileBlock < end && segment.fileBlock + segment.count > change.fileBlock)) {
      throw corrupt(`inode ${change.inode}'s log maps file block ${change.fileBlock} again`);
    }
    segments.push({ fileBlock: change.fileBlock, volumeBlock: change.volumeBlock, count: change.count, unwritten: change.unwritten });
  }
  segments.sort((a, b) => a.fileBlock - b.fileBlock);
  const strip = ({ fileBlock, volumeBlock, count }: Segment): BlockRun => ({ fileBlock, volumeBlock, count });
  return {
    blockBytes: map.blockBytes,
    runs: segments.filter((segment) => !segment.unwritten).map(strip),
    unwritten: segments.filter((segment) => segment.unwritten).map(strip),
    nodeBlocks: map.nodeBlocks,
  };
}

/** What is left of `segment` outside [from, to). */
function cut(segment: Segment, from: number, to: number): Segment[] {
  const end = segment.fileBlock + segment.count;
  if (end <= from || segment.fileBlock >= to) return [segment];
  const left: Segment[] = [];
  if (segment.fileBlock < from) left.push({ ...segment, count: from - segment.fileBlock });
  if (end > to) left.push({ ...segment, fileBlock: to, volumeBlock: segment.volumeBlock + (to - segment.fileBlock), count: end - to });
  return left;
}
