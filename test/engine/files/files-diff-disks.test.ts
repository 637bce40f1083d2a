/**
 * files-diff on a real ext4 guest (mkfs.ext4 -d, debugfs -w) inside a qcow2 with a snapshot: the
 * differences are exactly what the tools changed, including a file whose bytes changed while its
 * size and time did not; a state compared with itself has none. Restore gives back the snapshot's bytes.
 */
import * as fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../src/shared/qcow2/files/files-diff.ts';
import { restoreFromState } from '../../../src/shared/qcow2/files/restore.ts';
import { openStateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { BEFORE_FILES, MOTD, NOTES_AFTER, useChangedExtDisk } from '../../helpers/changed-ext-disk.ts';
import { qemuCheck, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
let disk = '';
useChangedExtDisk((made) => {
  folder = made.folder;
  disk = made.disk.path;
});

const diff = (from: string, to: string) => diffStatesByName((state) => openStateFiles(disk, state), from, to, () => readDiff(disk, from, to).ranges);

describe('files-diff on an ext4 guest', () => {
  it('finds what debugfs added, removed and rewrote, and the file changed behind the filesystem’s back', async () => {
    const result = await diff('before', 'current');
    expect(result.differences).toEqual([
      { path: '/etc/motd', change: 'added', kind: 'file', sizeAfter: MOTD.length },
      { path: '/home/me/keep.txt', change: 'changed', kind: 'file', sizeBefore: BEFORE_FILES['home/me/keep.txt']!.length, sizeAfter: BEFORE_FILES['home/me/keep.txt']!.length, reasons: ['content'] },
      {
        path: '/home/me/notes.txt',
        change: 'changed',
        kind: 'file',
        sizeBefore: BEFORE_FILES['home/me/notes.txt']!.length,
        sizeAfter: NOTES_AFTER.length,
        reasons: expect.arrayContaining(['size']) as string[],
      },
      { path: '/old', change: 'removed', kind: 'directory', sizeBefore: 0 },
      { path: '/old/gone.txt', change: 'removed', kind: 'file', sizeBefore: 4 },
    ]);
    expect(result.bytes).toBe(MOTD.length + BEFORE_FILES['home/me/keep.txt']!.length + NOTES_AFTER.length + 4);
    expect(result.skipped).toEqual([]);
  });

  it('reverses: removed becomes added', async () => {
    const result = await diff('current', 'before');
    expect(result.differences.filter((difference) => difference.change !== 'changed').map((difference) => [difference.change, difference.path])).toEqual([
      ['removed', '/etc/motd'],
      ['added', '/old'],
      ['added', '/old/gone.txt'],
    ]);
  });

  it('reads no content where the mapping tables say nothing changed', async () => {
    const reads: string[] = [];
    const counted = async (state: string) => {
      const files = await openStateFiles(disk, state);
      return { ...files, volumes: files.volumes, list: files.list.bind(files), stat: files.stat.bind(files), extents: files.extents.bind(files), close: files.close.bind(files), read: (path: string, buffer: Uint8Array, offset: number) => (reads.push(path), files.read(path, buffer, offset)) };
    };
    const result = await diffStatesByName(counted, 'before', 'current', () => []);
    expect(result.differences.find((difference) => difference.path === '/home/me/keep.txt')).toBeUndefined();
    expect(reads).toEqual([]);
  });

  it('finds nothing between a state and itself', async () => {
    expect((await diff('before', 'before')).differences).toEqual([]);
  });

  it('restores the snapshot’s file, leaving the disk as qemu-img finds it', async () => {
    const files = await openStateFiles(disk, 'before');
    try {
      const target = folder.file('keep-restored.txt');
      await restoreFromState(files, '/home/me/keep.txt', target);
      expect(fs.readFileSync(target, 'utf8')).toBe(BEFORE_FILES['home/me/keep.txt']);
      const tree = folder.file('old-restored');
      await restoreFromState(files, '/old', tree);
      expect(fs.readFileSync(`${tree}/gone.txt`, 'utf8')).toBe('bye\n');
    } finally {
      await files.close();
    }
    expect((await qemuCheck(disk)).code).toBe(0);
  });
});
