/**
 * lseek(2), which Node lacks (through libc.ts): where a file's next data or hole is (SEEK_DATA /
 * SEEK_HOLE), and where a block device ends (SEEK_END; fstat gives a device's size as 0). Where
 * the C library cannot be had, every answer is 'unknown'. Reads use positional I/O, so moving a
 * descriptor's offset here disturbs nothing.
 */
import { libc } from './libc.ts';

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
  const loaded = libc();
  // Without it, callers fall back to what they can do alone.
  if (loaded instanceof Error) return null;
  const call = loaded.library.func('int64_t lseek(int fd, int64_t offset, int whence)') as unknown as (fd: number, offset: number, whence: number) => number | bigint;
  lseek = { call: (fd, offset, whence) => Number(call(fd, offset, whence)), errno: () => loaded.koffi.errno() };
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
