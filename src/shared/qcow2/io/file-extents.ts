/**
 * Where a file holds data and where it has holes (lseek SEEK_DATA / SEEK_HOLE, file-seek.ts), so a
 * sparse raw disk's holes are known to read as zeros without reading them — what qemu-img's raw
 * driver does. Where the system, the file system or the file (a device) cannot tell, every byte
 * counts as data: slower, never wrong.
 */
import { seekData, seekHole } from './file-seek.ts';

export interface FileExtent {
  start: number;
  length: number;
  /** false: a hole, which reads as zeros. */
  data: boolean;
}

/** The extents of [start, end) in order, data and holes alternating, covering the range exactly. */
export function fileExtents(fd: number, start: number, end: number): FileExtent[] {
  const extents: FileExtent[] = [];
  const add = (from: number, to: number, data: boolean): void => {
    if (to <= from) return;
    const last = extents.at(-1);
    if (last !== undefined && last.data === data && last.start + last.length === from) last.length += to - from;
    else extents.push({ start: from, length: to - from, data });
  };
  let position = start;
  while (position < end) {
    const dataAt = seekData(fd, position);
    if (dataAt === 'unknown' || (typeof dataAt === 'number' && dataAt < position)) {
      add(position, end, true);
      break;
    }
    if (dataAt === 'none' || dataAt >= end) {
      add(position, end, false);
      break;
    }
    add(position, dataAt, false);
    const holeAt = seekHole(fd, dataAt);
    // A hole strictly after the data, or the data runs to the end of the range.
    const dataEnd = typeof holeAt === 'number' && holeAt > dataAt ? Math.min(end, holeAt) : end;
    add(dataAt, dataEnd, true);
    position = dataEnd;
  }
  return extents;
}

/** The first offset at or after `from` that may hold data, or `end` if none before it. */
export function nextDataOffset(fd: number, from: number, end: number): number {
  const dataAt = seekData(fd, from);
  if (dataAt === 'none') return end;
  if (dataAt === 'unknown' || dataAt < from) return from;
  return Math.min(dataAt, end);
}
