/**
 * Concrete byte patches: what a mutation does to a seed image, stored as-is in regression
 * fixtures so a case replays byte for byte without the generator that made it.
 */
import type { BytePatch } from './harness.ts';

export type Patch =
  | { op: 'write'; at: number; hex: string }
  | { op: 'truncate'; size: number }
  | { op: 'copy'; from: number; to: number; length: number }
  /** `hex` repeated over `length` bytes from `at`. */
  | { op: 'fill'; at: number; length: number; hex: string };

export interface Mutation {
  label: string;
  patches: Patch[];
}

/** Writes past the end may grow the file, but never by more than this. */
const MAX_GROWTH = 1024 * 1024;

export function applyMutations(seed: Uint8Array, mutations: Mutation[]): Uint8Array {
  let bytes = seed.slice();
  const grow = (end: number): void => {
    if (end <= bytes.length) return;
    const grown = new Uint8Array(Math.min(end, seed.length + MAX_GROWTH));
    grown.set(bytes);
    bytes = grown;
  };
  for (const mutation of mutations) {
    for (const patch of mutation.patches) {
      if (patch.op === 'truncate') {
        bytes = bytes.slice(0, Math.min(patch.size, bytes.length));
      } else if (patch.op === 'write' || patch.op === 'fill') {
        const data = patch.op === 'write' ? fromHex(patch.hex) : repeated(fromHex(patch.hex), patch.length);
        grow(patch.at + data.length);
        bytes.set(data.subarray(0, Math.max(0, bytes.length - patch.at)), patch.at);
      } else {
        const source = bytes.slice(patch.from, Math.min(patch.from + patch.length, bytes.length));
        grow(patch.to + source.length);
        bytes.set(source.subarray(0, Math.max(0, bytes.length - patch.to)), patch.to);
      }
    }
  }
  return bytes;
}

/** A harness BytePatch whose bytes are an array of their own. */
type PatchBytes = BytePatch & { bytes: Uint8Array };

/**
 * The byte patches that turn `seed` into applyMutations(seed, mutations), written in order over it,
 * without copying the seed (a copy of a 33 MiB volume per case was most of a FAT campaign's time).
 * Null when a mutation truncates: that case needs its whole image.
 */
export function mutationPatches(seed: Uint8Array, mutations: readonly Mutation[]): PatchBytes[] | null {
  const patches: PatchBytes[] = [];
  let length = seed.length;
  const limit = seed.length + MAX_GROWTH;
  const place = (at: number, data: Uint8Array): void => {
    // As applyMutations grows its copy: to the write's end, never past the limit (the write cut
    // there), and zeros to that end even when nothing lands there (a copy from past the end).
    const end = at + data.length;
    if (end > length) {
      const grown = Math.min(end, limit);
      patches.push({ offset: length, bytes: new Uint8Array(grown - length) });
      length = grown;
    }
    const kept = data.subarray(0, Math.max(0, length - at));
    if (kept.length > 0) patches.push({ offset: at, bytes: kept });
  };
  for (const mutation of mutations) {
    for (const patch of mutation.patches) {
      if (patch.op === 'truncate') return null;
      if (patch.op === 'write' || patch.op === 'fill') place(patch.at, patch.op === 'write' ? fromHex(patch.hex) : repeated(fromHex(patch.hex), patch.length));
      else place(patch.to, readPatched(seed, patches, patch.from, Math.max(0, Math.min(patch.from + patch.length, length) - patch.from)));
    }
  }
  return patches;
}

/** The seed with `patches` written over it in order, growing where one ends past it: what runPatched leaves in a worker's file (for tests of mutationPatches). */
export function writtenOver(seed: Uint8Array, patches: readonly PatchBytes[]): Uint8Array {
  const end = patches.reduce((furthest, patch) => Math.max(furthest, patch.offset + patch.bytes.length), seed.length);
  const bytes = new Uint8Array(end);
  bytes.set(seed);
  for (const patch of patches) bytes.set(patch.bytes, patch.offset);
  return bytes;
}

/** `count` bytes from `at` of the seed with `patches` written over it (zeros past the seed's end where no patch wrote). */
function readPatched(seed: Uint8Array, patches: readonly PatchBytes[], at: number, count: number): Uint8Array {
  const bytes = new Uint8Array(count);
  bytes.set(seed.subarray(Math.min(at, seed.length), Math.min(at + count, seed.length)));
  for (const patch of patches) {
    const from = Math.max(at, patch.offset);
    const to = Math.min(at + count, patch.offset + patch.bytes.length);
    if (from < to) bytes.set(patch.bytes.subarray(from - patch.offset, to - patch.offset), from - at);
  }
  return bytes;
}

function repeated(pattern: Uint8Array, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let at = 0; at < length && pattern.length > 0; at += pattern.length) bytes.set(pattern.subarray(0, length - at), at);
  return bytes;
}

export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

export function fromHex(hex: string): Uint8Array {
  const bytes = new Uint8Array(hex.length / 2);
  for (let index = 0; index < bytes.length; index++) bytes[index] = Number.parseInt(hex.slice(index * 2, index * 2 + 2), 16);
  return bytes;
}

/** A big-endian field of `size` bytes holding `value` (truncated to fit). */
export function writeField(at: number, value: bigint, size: number): Patch {
  const bytes = new Uint8Array(size);
  let rest = value & ((1n << BigInt(size * 8)) - 1n);
  for (let index = size - 1; index >= 0; index--) {
    bytes[index] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return { op: 'write', at, hex: toHex(bytes) };
}

export function readField(bytes: Uint8Array, at: number, size: number): bigint {
  let value = 0n;
  for (let index = 0; index < size; index++) value = (value << 8n) | BigInt(bytes[at + index] ?? 0);
  return value;
}
