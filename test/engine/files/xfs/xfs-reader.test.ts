/**
 * XFS guests (RHEL, Rocky, Alma, CentOS and Oracle Linux install onto XFS): volumes made by
 * mkfs.xfs and filled by the kernel's own XFS (fixtures/make-xfs-fixtures.py); what the kernel
 * reported of every entry (xfs-manifests.json) is the reference. Versions 4 and 5, 4 KiB and 1 KiB
 * blocks, folder blocks that span blocks, every folder form, extent lists and trees of one and two
 * levels, holes, preallocated space, links short and long, times before 1970 and after 2038,
 * files-diff between two states, a volume saved while mounted (its log replayed).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles } from '../../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../../src/shared/qcow2/snapshots/operations.ts';
import { describeDifferences, expectAsManifest, expectedDifferences, hashOf, readManifests, type Manifest } from '../../../helpers/guest-manifest.ts';
import { vouchingOpener } from '../../../helpers/vouching-opener.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifests = readManifests<Record<string, Record<string, Manifest>>>(path.join(FIXTURES, 'xfs-manifests.json.gz'));

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
    const found = describeDifferences(result);
    expect(found).toEqual(expectedDifferences(manifests['v5']!['first']!, manifests['v5']!['second']!));
    expect(found).toContain('changed /etc/passwd content');
    expect(found).toContain('removed /a/b/c/d/e/deep.txt');
    // The shortcut through folders whose bytes did not change finds the same, without walking them.
    const vouched: string[] = [];
    expect(await diffStatesByName(vouchingOpener(disk, true, vouched), 'before', 'unmounted', ranges)).toEqual(result);
    // (Changes are seen 64 KiB at a time, the pieces written: most folders share one with a changed inode.)
    expect(vouched).toContain('/folder-short');
    expect(vouched).not.toContain('/etc');
  });

  it('reads a volume copied while mounted with its log replayed (xfs-log-recovery.test.ts checks replay against the kernel)', async () => {
    const files = await openStateFiles(disks['v5']!, 'current');
    try {
      expect(files.volumes[0]!.caution).toBeUndefined();
      const hello = manifests['v5']!['second']!['/hello.txt']!;
      expect(await hashOf(files, '/hello.txt', hello.size)).toBe(hello.sha256);
      const written = new TextEncoder().encode('in the log, perhaps not yet in place\n');
      expect((await files.stat('/written-while-mounted.txt')).size).toBe(written.length);
    } finally {
      await files.close();
    }
  });

  it('reads the fixtures qemu-img holds clean (a fixture that is not would test the wrong thing)', async () => {
    for (const disk of Object.values(disks)) expect((await qemuImg(['check', disk])).code, disk).toBe(0);
  });
});
