/**
 * Where a file holds data and where it has holes (Linux lseek SEEK_DATA / SEEK_HOLE, through koffi
 * as image-lock.ts does), so a sparse raw disk's holes are known to read as zeros without reading
 * them — what qemu-img's raw driver does. Where the call cannot be loaded, or the file system or
 * the file (a device, a pipe) cannot tell, every byte counts as data: slower, never wrong.
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';

export interface FileExtent {
  start: number;
  length: number;
  /** false: a hole, which reads as zeros. */
  data: boolean;
}

const SEEK_DATA = 3;
const SEEK_HOLE = 4;
/** lseek's "no data at or after this offset". */
const ENXIO = 6;

interface Seeker {
  lseek(fd: number, offset: number, whence: number): number;
  errno(): number;
}

let seeker: Seeker | null | undefined;

function load(): Seeker | null {
  if (seeker !== undefined) return seeker;
  seeker = null;
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
    const lseek = koffi.load(null).func('int64_t lseek(int fd, int64_t offset, int whence)') as unknown as (fd: number, offset: number, whence: number) => number | bigint;
    seeker = { lseek: (fd, offset, whence) => Number(lseek(fd, offset, whence)), errno: () => koffi.errno() };
  } catch {
    // Only an optimisation: everything is data.
  }
  return seeker;
}

/** What lseek answered: an offset, "nothing more" (ENXIO), or that it cannot tell. */
function seek(fd: number, offset: number, whence: number): number | 'none' | 'unknown' {
  const calls = load();
  if (calls === null) return 'unknown';
  const result = calls.lseek(fd, offset, whence);
  if (result >= 0) return result;
  return calls.errno() === ENXIO ? 'none' : 'unknown';
}

/**
 * The extents of [start, end) in order, data and holes alternating, covering the range exactly.
 * (Reads use positional I/O, so moving the descriptor's offset here disturbs nothing.)
 */
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
    const dataAt = seek(fd, position, SEEK_DATA);
    if (dataAt === 'unknown' || (typeof dataAt === 'number' && dataAt < position)) {
      add(position, end, true);
      break;
    }
    if (dataAt === 'none' || dataAt >= end) {
      add(position, end, false);
      break;
    }
    add(position, dataAt, false);
    const holeAt = seek(fd, dataAt, SEEK_HOLE);
    // A hole strictly after the data, or the data runs to the end of the range.
    const dataEnd = typeof holeAt === 'number' && holeAt > dataAt ? Math.min(end, holeAt) : end;
    add(dataAt, dataEnd, true);
    position = dataEnd;
  }
  return extents;
}

/** The first offset at or after `from` that may hold data, or `end` if none before it. */
export function nextDataOffset(fd: number, from: number, end: number): number {
  const dataAt = seek(fd, from, SEEK_DATA);
  if (dataAt === 'none') return end;
  if (dataAt === 'unknown' || dataAt < from) return from;
  return Math.min(dataAt, end);
}
