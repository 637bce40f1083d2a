/**
 * btrfs guests (Fedora and openSUSE install onto btrfs): a volume made by mkfs.btrfs and filled by
 * the kernel's own btrfs (fixtures/make-btrfs-fixtures.py) — subvolumes, a snapshot with a nested
 * subvolume's placeholder, zstd/zlib/LZO-compressed and plain extents, inline files, holes,
 * preallocated space, a folder of 2,000 files — whose manifest (what the kernel reported of every
 * entry) is the reference. files-diff between two states, and a state copied with a file fsync'd
 * into the log tree (read with the log replayed; btrfs-log-replay.test.ts checks the replay against the kernel's).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles } from '../../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../../src/shared/qcow2/snapshots/operations.ts';
import { describeDifferences, expectAsManifest, expectedDifferences, hashOf, readManifests, type Manifest } from '../../../helpers/guest-manifest.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { vouchingOpener } from '../../../helpers/vouching-opener.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifests = readManifests<Record<string, Manifest>>(path.join(FIXTURES, 'btrfs-manifests.json.gz'));

let folder: TempDir;
let disk = '';

beforeAll(() => {
  folder = tempDir();
  disk = folder.file('btrfs.qcow2');
  fs.writeFileSync(disk, gunzipSync(fs.readFileSync(path.join(FIXTURES, 'btrfs.qcow2.gz'))));
});
afterAll(() => folder.cleanup());

describe('btrfs volumes as the kernel filled them', { timeout: 180_000 }, () => {
  it.each([
    ['first', 'before'],
    ['second', 'unmounted'],
  ])('reads every entry of the %s state as the kernel reported it', async (manifestState, state) => {
    const files = await openStateFiles(disk, state);
    try {
      expect(files.volumes).toMatchObject([{ name: '', table: 'none', filesystem: 'btrfs', label: 'fedora' }]);
      expect(files.volumes[0]!.problem).toBeUndefined();
      // Unmounted cleanly: no log tree.
      expect(files.volumes[0]!.caution).toBeUndefined();
      // The kernel gives a snapshot's placeholder for a nested subvolume the time it was looked up.
      await expectAsManifest(files, manifests[manifestState]!, ['/root-snapshot/var/lib/machines']);
    } finally {
      await files.close();
    }
  });

  it('covers what it means to: every compression, a nested subvolume and its placeholder in a snapshot, a tree of several leaves', async () => {
    const first = manifests['first']!;
    expect(first['/root/var/lib/machines']!.inode).toBe(256); // a subvolume's root folder
    expect(first['/root-snapshot/var/lib/machines']!.inode).toBe(2); // the kernel's empty placeholder
    expect(Object.keys(first).filter((entry) => entry.startsWith('/root/many/'))).toHaveLength(2000);
    // The reader's own view: which extents are compressed how (1 zlib, 2 LZO, 3 zstd), and which are inline.
    const files = await openStateFiles(disk, 'before');
    try {
      const inline = await files.extents('/root/var/log/small-lzo.txt');
      expect(inline).toBeNull();
      for (const file of ['/root/var/log/zstd.log', '/root/var/log/zlib.log', '/root/var/log/lzo.log']) {
        // Compressed: each extent stored in fewer bytes than the file holds.
        const stored = (await files.extents(file))!.reduce((total, range) => total + range.length, 0);
        expect(stored, file).toBeLessThan(first[file]!.size / 4);
      }
      expect((await files.extents('/root/random.bin'))!.reduce((total, range) => total + range.length, 0)).toBeGreaterThanOrEqual(first['/root/random.bin']!.size - 4096);
      // The placeholder has no time of its own (the kernel makes one up when it is looked up).
      expect((await files.stat('/root-snapshot/var/lib/machines')).mtimeMs).toBeNull();
    } finally {
      await files.close();
    }
  });

  it('reads preallocated space as zeros and not as data: only what was written into it', async () => {
    const files = await openStateFiles(disk, 'before');
    try {
      expect(await files.dataRanges!('/root/preallocated.bin')).toEqual([{ offset: 256 * 1024, length: 4096 }]);
    } finally {
      await files.close();
    }
  });

  it('finds what changed between two states as files: added, removed, and a file changed behind its size and time', async () => {
    const ranges = () => readDiff(disk, 'before', 'unmounted').ranges;
    const found = describeDifferences(await diffStatesByName(vouchingOpener(disk, false), 'before', 'unmounted', ranges));
    expect(found).toEqual(expectedDifferences(manifests['first']!, manifests['second']!));
    expect(found).toContain('changed /root/etc/passwd content');
    expect(found).toContain('removed /root/a/b/c/d/e/deep.txt');
    expect(found).toContain('changed /home/me/notes.txt size,mtime');
  });

  it('reads a volume copied with a file just fsync\'d as a mount does: its log tree replayed, the file there, no caution', async () => {
    const files = await openStateFiles(disk, 'current');
    try {
      expect(files.volumes[0]!.caution).toBeUndefined();
      const hostname = manifests['second']!['/root/etc/hostname']!;
      expect(await hashOf(files, '/root/etc/hostname', hostname.size)).toBe(hostname.sha256);
      const saved = new Uint8Array(64);
      const count = await files.read('/root/fsynced.txt', saved, 0);
      expect(new TextDecoder().decode(saved.subarray(0, count))).toBe('saved by fsync, in the log tree\n');
    } finally {
      await files.close();
    }
  });

  it('reads a fixture qemu-img holds clean (a fixture that is not would test the wrong thing)', async () => {
    expect((await qemuImg(['check', disk])).code).toBe(0);
  });
});
