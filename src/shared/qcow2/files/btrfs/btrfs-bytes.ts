/** Little-endian fields of btrfs structures, its keys, and the errors every btrfs module throws. */
import { Qcow2Error } from '../../errors.ts';

export function uint16(bytes: Uint8Array, at: number): number {
  return (bytes[at] as number) | ((bytes[at + 1] as number) << 8);
}

export function uint32(bytes: Uint8Array, at: number): number {
  return ((bytes[at] as number) | ((bytes[at + 1] as number) << 8) | ((bytes[at + 2] as number) << 16) | ((bytes[at + 3] as number) << 24)) >>> 0;
}

/** A 64-bit field as a number; FILESYSTEM_CORRUPT where it is beyond 2^53 (no address, size or inode number this reader follows goes there). */
export function uint64(bytes: Uint8Array, at: number, what: string): number {
  const high = uint32(bytes, at + 4);
  if (high >= 0x200000) throw corrupt(`${what} is 0x${high.toString(16)}${uint32(bytes, at).toString(16).padStart(8, '0')}, beyond any volume`);
  return high * 0x100000000 + uint32(bytes, at);
}

/** A 64-bit field whole (key object ids and offsets span all 64 bits: -1 and the like are special ids). */
export function bigUint64(bytes: Uint8Array, at: number): bigint {
  return (BigInt(uint32(bytes, at + 4)) << 32n) | BigInt(uint32(bytes, at));
}

/** A btrfs key: what an item is about (an inode, a tree, a chunk), its type, and an offset whose meaning the type gives. */
export interface BtrfsKey {
  objectId: bigint;
  type: number;
  offset: bigint;
}

export const KEY_BYTES = 17;

export function readKey(bytes: Uint8Array, at: number): BtrfsKey {
  return { objectId: bigUint64(bytes, at), type: bytes[at + 8] as number, offset: bigUint64(bytes, at + 9) };
}

export function corrupt(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_CORRUPT', `The btrfs filesystem is damaged: ${detail}`);
}

export function unsupported(detail: string): Qcow2Error {
  return new Qcow2Error('FILESYSTEM_UNSUPPORTED', `The btrfs filesystem uses what Cowbell cannot read: ${detail}`);
}
