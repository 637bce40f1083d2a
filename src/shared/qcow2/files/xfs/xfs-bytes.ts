/** Big-endian fields of XFS structures, and the errors every XFS module throws. */
import { Qcow2Error } from '../../errors.ts';
import { crc32c } from '../crc32c.ts';

export function uint16(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) << 8) | (bytes[at + 1] as number);
}

export function uint32(bytes: Uint8Array, at: number): number {
  return (((bytes[at] as number) << 24) | ((bytes[at + 1] as number) << 16) | ((bytes[at + 2] as number) << 8) | (bytes[at + 3] as number)) >>> 0;
}

export function int32(bytes: Uint8Array, at: number): number {
  return uint32(bytes, at) | 0;
}

/** A 64-bit field as a number; FILESYSTEM_CORRUPT where it is beyond 2^53 (no XFS this reader opens counts that far). */
export function uint64(bytes: Uint8Array, at: number, what: string): number {
  const high = uint32(bytes, at);
  if (high >= 0x200000) throw corrupt(`${what} is ${high.toString(16)}${uint32(bytes, at + 4).toString(16).padStart(8, '0')} (hex), beyond any volume`);
  return high * 0x100000000 + uint32(bytes, at + 4);
}

export function corrupt(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `The XFS filesystem is damaged: ${detail}`);
}

export function unsupported(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_UNSUPPORTED', `The XFS filesystem uses what Cowbell cannot read: ${detail}`);
}

const ZERO_CRC = new Uint8Array(4);

/**
 * Whether a version 5 structure's CRC-32C holds: computed over its bytes with the CRC field (4
 * bytes at `at`) taken as zeros, stored inverted and little-endian, as XFS writes it.
 */
export function checksumHolds(bytes: Uint8Array, at: number): boolean {
  const crc = crc32c(bytes.subarray(at + 4), crc32c(ZERO_CRC, crc32c(bytes.subarray(0, at))));
  const stored = ((bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 24)) >>> 0;
  return stored === (~crc >>> 0);
}
