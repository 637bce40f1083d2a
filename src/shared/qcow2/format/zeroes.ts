/** Fast all-zero and equality tests over guest data (native memcmp through Buffer.compare). */
import { Buffer } from 'node:buffer';

const ZEROES = Buffer.alloc(256 * 1024);

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function isAllZero(bytes: Uint8Array): boolean {
  const length = bytes.length;
  // Most data differs from zero at one end: no need to scan it.
  if (length === 0) return true;
  if (bytes[0] !== 0 || bytes[length - 1] !== 0) return false;
  const buffer = asBuffer(bytes);
  for (let offset = 0; offset < length; offset += ZEROES.length) {
    const end = Math.min(length, offset + ZEROES.length);
    if (buffer.compare(ZEROES, 0, end - offset, offset, end) !== 0) return false;
  }
  return true;
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && asBuffer(a).equals(asBuffer(b));
}
