/**
 * lseek(2) where Node has none (through koffi, as image-lock.ts calls fcntl): where a file's next
 * data or hole is (SEEK_DATA / SEEK_HOLE), and where a block device ends (SEEK_END; fstat gives a
 * device's size as 0). Linux only; elsewhere, or when the call cannot be loaded, every answer is
 * 'unknown'. Reads use positional I/O, so moving a descriptor's offset here disturbs nothing.
 */
import { createRequire } from 'node:module';
import type * as Koffi from 'koffi';

const SEEK_END = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
/** lseek's "no data at or after this offset". */
const ENXIO = 6;

/** An offset; 'none' when there is no more data (SEEK_DATA only); 'unknown' when it cannot tell. */
export type SeekAnswer = number | 'none' | 'unknown';

interface Lseek {
  call(fd: number, offset: number, whence: number): number;
  errno(): number;
}

let lseek: Lseek | null | undefined;

function load(): Lseek | null {
  if (lseek !== undefined) return lseek;
  lseek = null;
  if (process.platform !== 'linux') return null;
  try {
    const koffi = createRequire(import.meta.url)('koffi') as typeof Koffi;
    const call = koffi.load(null).func('int64_t lseek(int fd, int64_t offset, int whence)') as unknown as (fd: number, offset: number, whence: number) => number | bigint;
    lseek = { call: (fd, offset, whence) => Number(call(fd, offset, whence)), errno: () => koffi.errno() };
  } catch {
    // Callers fall back to what they can do without it.
  }
  return lseek;
}

function seek(fd: number, offset: number, whence: number): SeekAnswer {
  const calls = load();
  if (calls === null) return 'unknown';
  const result = calls.call(fd, offset, whence);
  if (result >= 0) return result;
  return calls.errno() === ENXIO ? 'none' : 'unknown';
}

/** The first offset at or after `offset` that holds data. */
export const seekData = (fd: number, offset: number): SeekAnswer => seek(fd, offset, SEEK_DATA);

/** The first hole at or after `offset` (the end of the file counts as one). */
export const seekHole = (fd: number, offset: number): SeekAnswer => seek(fd, offset, SEEK_HOLE);

/** Where the file or device ends. */
export function seekEnd(fd: number): number | 'unknown' {
  const end = seek(fd, 0, SEEK_END);
  return typeof end === 'number' ? end : 'unknown';
}
