import type { BlockFile } from './block-file.ts';

/** `length` bytes at `offset`, zeros past the end of the file. */
export function readZeroFilled(file: BlockFile, offset: number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const count = file.read(bytes, offset);
  bytes.fill(0, count);
  return bytes;
}
