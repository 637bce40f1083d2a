/**
 * XFS guests (RHEL, Rocky, Alma, CentOS and Oracle Linux install onto XFS): volumes made by
 * mkfs.xfs and filled by the kernel's own XFS (fixtures/make-xfs-fixtures.py); what the kernel
 * reported of every entry (xfs-manifests.json) is the reference. Versions 4 and 5, 4 KiB and 1 KiB
 * blocks, folder blocks that span blocks, every folder form, extent lists and trees of one and two
 * levels, holes, preallocated space, links short and long, times before 1970 and after 2038,
 * files-diff between two states, a volume saved while mounted.
 */
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles, type StateFiles } from '../../../../src/shared/qcow2/files/state-files.ts';
import type { GuestFileEntry } from '../../../../src/shared/qcow2/model.ts';
import { readDiff } from '../../../../src/shared/qcow2/snapshots/operations.ts';
import { vouchingOpener } from '../../../helpers/vouching-opener.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';

interface ManifestEntry {
  kind: GuestFileEntry['kind'];
  size: number;
  mtimeNs: string;
  permissions: number;
  inode: number;
  target?: string;
  sha256?: string;
  dataRanges?: [number, number][];
}
type Manifest = Record<string, ManifestEntry>;

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifests = JSON.parse(gunzipSync(fs.readFileSync(path.join(FIXTURES, 'xfs-manifests.json.gz'))).toString('utf8')) as Record<string, Record<string, Manifest>>;

let folder: TempDir;
const disks: Record<string, string> = {};

beforeAll(() => {
  folder = tempDir();
  for (const name of ['v5', '1k', 'v4']) {
    disks[name] = folder.file(`${name}.qcow2`);
    fs.writeFileSync(disks[name], gunzipSync(fs.readFileSync(path.join(FIXTURES, `xfs-${name}.qcow2.gz`))));
  }
});
afterAll(() => folder.cleanup());

/** Milliseconds (rounded down, as the readers give them) of a time in nanoseconds. */
function floorMs(nanoseconds: string): number {
  const ns = BigInt(nanoseconds);
  const ms = ns / 1_000_000n;
  return Number(ns < 0n && ms * 1_000_000n !== ns ? ms - 1n : ms);
}

const PIECE = 4 * 1024 * 1024;
const ZEROS = Buffer.alloc(PIECE);

/**
 * A file's content hash as the manifest keeps it (SHA-256's first 64 bits, in hex), read in pieces
 * (sparse.bin is 3 GiB); every byte outside `dataRanges` must read as zero (a copy skips them).
 */
async function hashOf(files: StateFiles, file: string, size: number, dataRanges: readonly [number, number][] = [[0, size]]): Promise<string> {
  const hash = createHash('sha256');
  const piece = Buffer.alloc(PIECE);
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

/** Every entry of the manifest read through the state's files: listings, kinds, sizes, times, modes, targets, content, data ranges. */
async function expectAsManifest(files: StateFiles, manifest: Manifest): Promise<void> {
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
        mtimeMs: floorMs(expected.mtimeNs),
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

describe('XFS volumes as the kernel filled them', { timeout: 180_000 }, () => {
  it.each([
    ['v5', 'first', 'before', 'cowbell-xfs'],
    ['v5', 'second', 'unmounted', 'cowbell-xfs'],
    ['1k', 'first', 'current', 'small-blocks'],
    ['v4', 'first', 'current', 'version-4'],
  ])('%s (%s state) reads every entry as the kernel reported it', async (name, manifestState, state, label) => {
    const files = await openStateFiles(disks[name]!, state);
    try {
      expect(files.volumes).toMatchObject([{ name: '', table: 'none', filesystem: 'xfs', label }]);
      expect(files.volumes[0]!.problem).toBeUndefined();
      // Unmounted cleanly: its log ends with an unmount record.
      expect(files.volumes[0]!.caution).toBeUndefined();
      await expectAsManifest(files, manifests[name]![manifestState]!);
    } finally {
      await files.close();
    }
  });

  it('covers what it means to: both folder-block forms, extent trees of one and two levels, remote links, times on both sides of 1970 and 2038', () => {
    const v5 = manifests['v5']!['first']!;
    expect(Object.keys(v5).filter((entry) => entry.startsWith('/folder-node/'))).toHaveLength(2000);
    expect(v5['/fragmented.bin']!.dataRanges!.length).toBeGreaterThan(21); // more than an inode's extent list holds
    expect(manifests['1k']!['first']!['/fragmented.bin']!.dataRanges!.length).toBeGreaterThan(21 * 59); // more than one level of 1 KiB tree blocks holds
    expect(v5['/link-longest']!.target).toHaveLength(1000);
    expect(BigInt(v5['/etc/hostname']!.mtimeNs)).toBeLessThan(0n);
    expect(BigInt(v5['/etc/passwd']!.mtimeNs)).toBeGreaterThan(2n ** 31n * 1_000_000_000n);
  });

  it('reads preallocated space as zeros and not as data: only what was written into it', async () => {
    const files = await openStateFiles(disks['v5']!, 'before');
    try {
      expect(await files.dataRanges!('/preallocated.bin')).toEqual([{ offset: 256 * 1024, length: 4096 }]);
      // Its extents are the whole preallocation: a write into it changes those blocks.
      expect((await files.extents('/preallocated.bin'))!.reduce((total, range) => total + range.length, 0)).toBe(1024 * 1024);
    } finally {
      await files.close();
    }
  });

  it('looks names up without regard to ASCII case where the volume was made so (mkfs.xfs -n version=ci), and only there', async () => {
    const ci = await openStateFiles(disks['v4']!, 'current');
    const plain = await openStateFiles(disks['v5']!, 'before');
    try {
      expect((await ci.stat('/ETC/HOSTNAME')).path).toBe('/ETC/HOSTNAME');
      expect((await ci.stat('/ETC/HOSTNAME')).size).toBe(manifests['v4']!['first']!['/etc/hostname']!.size);
      await expect(plain.stat('/ETC/HOSTNAME')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await ci.close();
      await plain.close();
    }
  });

  it('finds what changed between two states as files: added, removed, and a file changed behind its size and time', async () => {
    const disk = disks['v5']!;
    const ranges = () => readDiff(disk, 'before', 'unmounted').ranges;
    const result = await diffStatesByName(vouchingOpener(disk, false), 'before', 'unmounted', ranges);
    const first = manifests['v5']!['first']!;
    const second = manifests['v5']!['second']!;
    const expected: string[] = [];
    for (const entryPath of new Set([...Object.keys(first), ...Object.keys(second)])) {
      const [before, after] = [first[entryPath], second[entryPath]];
      if (before === undefined) expected.push(`added ${entryPath}`);
      else if (after === undefined) expected.push(`removed ${entryPath}`);
      else if (after.kind !== 'directory') {
        // A folder is compared by its entries, not its own time.
        const reasons = [before.size !== after.size && 'size', floorMs(before.mtimeNs) !== floorMs(after.mtimeNs) && 'mtime', before.sha256 !== after.sha256 && before.size === after.size && before.mtimeNs === after.mtimeNs && 'content'].filter(Boolean);
        if (reasons.length > 0) expected.push(`changed ${entryPath} ${reasons.join(',')}`);
      }
    }
    const found = result.differences.map((difference) => (difference.change === 'changed' ? `changed ${difference.path} ${(difference.reasons ?? []).join(',')}` : `${difference.change} ${difference.path}`));
    expect(found.sort()).toEqual(expected.sort());
    expect(found).toContain('changed /etc/passwd content');
    expect(found).toContain('removed /a/b/c/d/e/deep.txt');
    // The shortcut through folders whose bytes did not change finds the same, without walking them.
    const vouched: string[] = [];
    expect(await diffStatesByName(vouchingOpener(disk, true, vouched), 'before', 'unmounted', ranges)).toEqual(result);
    // (Changes are seen 64 KiB at a time, the pieces written: most folders share one with a changed inode.)
    expect(vouched).toContain('/folder-short');
    expect(vouched).not.toContain('/etc');
  });

  it('says a volume copied while mounted may miss its latest changes, and still reads it', async () => {
    const files = await openStateFiles(disks['v5']!, 'current');
    try {
      expect(files.volumes[0]!.caution).toMatch(/mounted when the state was saved/);
      const hello = manifests['v5']!['second']!['/hello.txt']!;
      expect(await hashOf(files, '/hello.txt', hello.size)).toBe(hello.sha256);
    } finally {
      await files.close();
    }
  });

  it('reads the fixtures qemu-img holds clean (a fixture that is not would test the wrong thing)', async () => {
    for (const disk of Object.values(disks)) expect((await qemuImg(['check', disk])).code, disk).toBe(0);
  });
});
