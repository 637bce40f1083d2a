/**
 * A guest filesystem fixture's manifest (what the kernel reported of every entry when the fixture
 * script made it: test/engine/files/fixture_tools.py) and the check of a state's files against it.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { expect } from 'vitest';
import type { StateFiles } from '../../src/shared/qcow2/files/state-files.ts';
import type { GuestFileEntry, GuestFilesDiff } from '../../src/shared/qcow2/model.ts';

export interface ManifestEntry {
  kind: GuestFileEntry['kind'];
  size: number;
  mtimeNs: string;
  permissions: number;
  inode: number;
  target?: string;
  sha256?: string;
  dataRanges?: [number, number][];
}
export type Manifest = Record<string, ManifestEntry>;

/** The manifests of a fixture file (xfs-manifests.json.gz and the like): by volume and state, or by state. */
export function readManifests<T>(file: string): T {
  return JSON.parse(gunzipSync(fs.readFileSync(file)).toString('utf8')) as T;
}

/** Milliseconds (rounded down, as the readers give them) of a time in nanoseconds. */
export function floorMs(nanoseconds: string): number {
  const ns = BigInt(nanoseconds);
  const ms = ns / 1_000_000n;
  return Number(ns < 0n && ms * 1_000_000n !== ns ? ms - 1n : ms);
}

const PIECE = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(PIECE);
/** One buffer for every read (a new 4 MiB buffer per file of thousands was most of the time). */
const PIECE_BUFFER = Buffer.alloc(PIECE);

/**
 * A file's content hash as the manifest keeps it (SHA-256's first 64 bits, in hex), read in pieces
 * (sparse.bin is 3 GiB); every byte outside `dataRanges` must read as zero (a copy skips them).
 */
export async function hashOf(files: StateFiles, file: string, size: number, dataRanges: readonly [number, number][] = [[0, size]]): Promise<string> {
  const hash = createHash('sha256');
  const piece = PIECE_BUFFER;
  let offset = 0;
  while (offset < size) {
    const count = await files.read(file, piece, offset);
    if (count === 0) break;
    hash.update(piece.subarray(0, count));
    let at = offset;
    for (const [start, length] of [...dataRanges, [size, 0] as const]) {
      const gapEnd = Math.min(start, offset + count);
      if (gapEnd > at) expect(piece.subarray(at - offset, gapEnd - offset).equals(ZEROS.subarray(0, gapEnd - at)), `${file} reads zeros outside its data ranges at ${at}`).toBe(true);
      at = Math.max(at, start + length);
      if (at >= offset + count) break;
    }
    offset += count;
  }
  expect(offset, file).toBe(size);
  return hash.digest('hex').slice(0, 16);
}

/** Ranges cut at the file's end and joined where they meet, as SEEK_DATA/SEEK_HOLE report them. */
function joined(ranges: readonly { offset: number; length: number }[], size: number): [number, number][] {
  const out: [number, number][] = [];
  for (const range of ranges) {
    const end = Math.min(size, range.offset + range.length);
    if (end <= range.offset) continue;
    const last = out.at(-1);
    if (last !== undefined && last[0] + last[1] === range.offset) last[1] = end - last[0];
    else out.push([range.offset, end - range.offset]);
  }
  return out;
}

/**
 * Every entry of the manifest read through the state's files: listings, kinds, sizes, times, modes,
 * targets, content, data ranges. `timeMadeUp`: entries whose time the
 * kernel makes up when it looks them up (btrfs's placeholder for a subvolume inside a snapshot).
 */
export async function expectAsManifest(files: StateFiles, manifest: Manifest, timeMadeUp: readonly string[] = []): Promise<void> {
  const children = new Map<string, string[]>([['/', []]]);
  for (const entryPath of Object.keys(manifest)) {
    const parent = entryPath.slice(0, entryPath.lastIndexOf('/')) || '/';
    if (!children.has(parent)) children.set(parent, []);
    children.get(parent)!.push(entryPath.slice(entryPath.lastIndexOf('/') + 1));
    if (manifest[entryPath]!.kind === 'directory' && !children.has(entryPath)) children.set(entryPath, []);
  }
  for (const [folderPath, names] of children) {
    const listed = await files.list(folderPath);
    expect(listed.map((entry) => entry.name), folderPath).toEqual([...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    for (const entry of listed) {
      const expected = manifest[entry.path]!;
      expect({ path: entry.path, kind: entry.kind, size: entry.size, mtimeMs: entry.mtimeMs, permissions: entry.permissions, target: entry.target }).toEqual({
        path: entry.path,
        kind: expected.kind,
        size: expected.size,
        mtimeMs: timeMadeUp.includes(entry.path) ? entry.mtimeMs : floorMs(expected.mtimeNs),
        permissions: expected.permissions,
        target: expected.target,
      });
      if (expected.kind !== 'file') continue;
      // Never more than the kernel says holds data; less where the kernel counts preallocated
      // (unwritten) space, which reads as zeros: every byte outside the ranges is read and checked.
      const ranges = joined((await files.dataRanges!(entry.path)) ?? [], expected.size);
      for (const [offset, length] of ranges) expect(expected.dataRanges!.some(([start, span]) => start <= offset && offset + length <= start + span), `${entry.path} ${offset}+${length}`).toBe(true);
      expect(await hashOf(files, entry.path, expected.size, ranges), entry.path).toBe(expected.sha256);
    }
  }
}

/** What files-diff must find between two manifests' states, as describeDifferences spells it (sorted). */
export function expectedDifferences(first: Manifest, second: Manifest): string[] {
  const expected: string[] = [];
  for (const entryPath of new Set([...Object.keys(first), ...Object.keys(second)])) {
    const [before, after] = [first[entryPath], second[entryPath]];
    if (before === undefined) expected.push(`added ${entryPath}`);
    else if (after === undefined) expected.push(`removed ${entryPath}`);
    else if (after.kind === 'directory') {
      // A folder is compared by its entries and its permissions, not its own time.
      if (before.permissions !== after.permissions) expected.push(`changed ${entryPath} mode`);
    } else {
      const reasons = [
        before.size !== after.size && 'size',
        floorMs(before.mtimeNs) !== floorMs(after.mtimeNs) && 'mtime',
        after.kind === 'symlink' && before.target !== after.target && 'target',
        after.kind !== 'symlink' && before.permissions !== after.permissions && 'mode',
      ].filter(Boolean);
      // Content is compared only where nothing else tells.
      if (reasons.length === 0 && after.kind === 'file' && after.size > 0 && before.sha256 !== after.sha256) reasons.push('content');
      if (reasons.length > 0) expected.push(`changed ${entryPath} ${reasons.join(',')}`);
    }
  }
  return expected.sort();
}

/** files-diff's differences as "added PATH", "removed PATH" or "changed PATH reasons", sorted. */
export function describeDifferences(result: GuestFilesDiff): string[] {
  return result.differences.map((difference) => (difference.change === 'changed' ? `changed ${difference.path} ${(difference.reasons ?? []).join(',')}` : `${difference.change} ${difference.path}`)).sort();
}
