/**
 * files-diff's rules over in-memory states (the fixture-disk tests in files-diff-disks.test.ts check
 * the same against real ext4 filesystems): what counts as added, removed and changed, and when
 * content is read.
 */
import { describe, expect, it } from 'vitest';
import type { ByteRange } from '../../../src/shared/qcow2/files/filesystem.ts';
import { diffStateFiles } from '../../../src/shared/qcow2/files/files-diff.ts';
import { GuestRangeSet } from '../../../src/shared/qcow2/files/guest-range-set.ts';
import type { StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { memoryState, type MemoryTree } from '../../helpers/memory-state-files.ts';

const diff = (before: StateFiles, after: StateFiles, changedRanges: ByteRange[] = []) => diffStateFiles(before, after, { from: 'a', to: 'b', changedRanges });

describe('files-diff', () => {
  it('reports added and removed entries with everything under a new or gone folder, and the bytes involved', async () => {
    const before = memoryState({ '': { etc: { hostname: { content: 'box\n' } }, old: { a: { content: '12345' }, b: { deeper: { content: 'xy' } } } } });
    const after = memoryState({ '': { etc: { hostname: { content: 'box\n' }, hosts: { content: '127.0.0.1\n' } }, home: { me: { notes: { content: 'hi' } } } } });
    const result = await diff(before, after);
    expect(result.differences).toEqual([
      { path: '/etc/hosts', change: 'added', kind: 'file', sizeAfter: 10 },
      { path: '/home', change: 'added', kind: 'directory', sizeAfter: 0 },
      { path: '/home/me', change: 'added', kind: 'directory', sizeAfter: 0 },
      { path: '/home/me/notes', change: 'added', kind: 'file', sizeAfter: 2 },
      { path: '/old', change: 'removed', kind: 'directory', sizeBefore: 0 },
      { path: '/old/a', change: 'removed', kind: 'file', sizeBefore: 5 },
      { path: '/old/b', change: 'removed', kind: 'directory', sizeBefore: 0 },
      { path: '/old/b/deeper', change: 'removed', kind: 'file', sizeBefore: 2 },
    ]);
    expect(result.bytes).toBe(10 + 2 + 5 + 2);
    expect(result).toMatchObject({ from: 'a', to: 'b', skipped: [] });
  });

  it('names each reason a file changed: size, time, kind, symlink target', async () => {
    const before = memoryState({ '': { grown: { content: 'a' }, touched: { content: 'same', mtimeMs: 1 }, link: { target: '/x' }, swapped: { content: 'file' }, folder: { inside: { content: '1' } } } });
    const after = memoryState({ '': { grown: { content: 'ab' }, touched: { content: 'same', mtimeMs: 2 }, link: { target: '/y' }, swapped: { target: '/z' }, folder: { content: 'now a file' } } });
    const result = await diff(before, after);
    expect(result.differences).toEqual([
      { path: '/folder', change: 'changed', kind: 'file', sizeBefore: 0, sizeAfter: 10, reasons: ['kind'] },
      { path: '/folder/inside', change: 'removed', kind: 'file', sizeBefore: 1 },
      { path: '/grown', change: 'changed', kind: 'file', sizeBefore: 1, sizeAfter: 2, reasons: ['size'] },
      { path: '/link', change: 'changed', kind: 'symlink', sizeBefore: 2, sizeAfter: 2, reasons: ['target'] },
      { path: '/swapped', change: 'changed', kind: 'symlink', sizeBefore: 4, sizeAfter: 2, reasons: ['kind'] },
      { path: '/touched', change: 'changed', kind: 'file', sizeBefore: 4, sizeAfter: 4, reasons: ['mtime'] },
    ]);
  });

  it('names a change of permissions alone (a chmod keeps size and time: files audit 5), where both states keep them', async () => {
    const before = memoryState({ '': { key: { content: 'k', permissions: 0o644 }, same: { content: 's', permissions: 0o600 }, fat: { content: 'f' } } });
    const after = memoryState({ '': { key: { content: 'k', permissions: 0o600 }, same: { content: 's', permissions: 0o600 }, fat: { content: 'f', permissions: 0o755 } } });
    expect((await diff(before, after)).differences).toEqual([{ path: '/key', change: 'changed', kind: 'file', sizeBefore: 1, sizeAfter: 1, reasons: ['mode'] }]);
  });

  it('looks at content only where the changed guest ranges touch a file, and confirms by its bytes', async () => {
    const extents = (offset: number) => [{ offset, length: 4096 }];
    const before = memoryState({
      '': { edited: { content: 'old!', extents: extents(8192) }, neighbour: { content: 'same', extents: extents(12288) }, far: { content: 'abcd', extents: extents(65536) } },
    });
    const after = memoryState({
      '': { edited: { content: 'new!', extents: extents(8192) }, neighbour: { content: 'same', extents: extents(12288) }, far: { content: 'ABCD', extents: extents(65536) } },
    });
    // One 64 KiB cluster holds both the edited file and its neighbour; "far" lies outside it.
    const result = await diff(before, after, [{ offset: 0, length: 65536 }]);
    expect(result.differences).toEqual([{ path: '/edited', change: 'changed', kind: 'file', sizeBefore: 4, sizeAfter: 4, reasons: ['content'] }]);
    expect(after.reads.sort()).toEqual(['/edited', '/neighbour']);
  });

  it('trusts the later extents alone inside an unchanged folder, and asks both states where a name may lead elsewhere', async () => {
    // "moved" lies on other blocks in each state (a rename over it would do that), outside the changed ranges, with other bytes.
    const before = memoryState({ '': { etc: { moved: { content: 'old bytes', extents: [{ offset: 4096, length: 4096 }] } } } });
    const after = (folderTime: number) => memoryState({ '': { etc: { moved: { content: 'new bytes', extents: [{ offset: 8192, length: 4096 }] } } } }, {}, { '/etc': folderTime });
    const changed = [{ offset: 500_000, length: 4096 }];
    const sameFolder = after(1000);
    expect((await diff(before, sameFolder, changed)).differences).toEqual([]);
    expect(sameFolder.reads).toEqual([]);
    const renamedInto = after(2000);
    expect((await diff(before, renamedInto, changed)).differences).toEqual([{ path: '/etc/moved', change: 'changed', kind: 'file', sizeBefore: 9, sizeAfter: 9, reasons: ['content'] }]);
  });

  it('reads a file whose extents the reader cannot give only when the changed ranges touch its volume', async () => {
    const tree = (content: string): MemoryTree => ({ file: { content, extents: null } });
    const before = memoryState({ '1': tree('one'), '2': tree('two') });
    const after = memoryState({ '1': tree('ONE'), '2': tree('TWO') });
    const result = await diff(before, after, [{ offset: 1_000_000, length: 512 }]);
    expect(result.differences.map((difference) => [difference.path, difference.reasons])).toEqual([['/2/file', ['content']]]);
    expect(after.reads).toEqual(['/2/file']);
  });

  it('skips volumes it cannot read and says why, and compares a volume only one state has as added or removed', async () => {
    const before = memoryState({ '1': { a: { content: 'a' } }, '2': {}, '3': { gone: { content: 'bye' } } }, { '2': { filesystem: null } });
    const after = memoryState({ '1': { a: { content: 'a' } }, '2': {}, '4': { fresh: { content: 'hello' } } }, { '2': { filesystem: null }, '4': { problem: 'the superblock is damaged' } });
    const result = await diff(before, after, [{ offset: 0, length: 4_000_000 }]);
    expect(result.skipped).toEqual([
      { volume: '/2', reason: 'no filesystem Cowbell can read' },
      { volume: '/4', reason: 'the superblock is damaged' },
    ]);
    expect(result.differences).toEqual([
      { path: '/3', change: 'removed', kind: 'directory', sizeBefore: 0 },
      { path: '/3/gone', change: 'removed', kind: 'file', sizeBefore: 3 },
    ]);
  });

  it('pairs entries by name whatever order each state lists them in, and reports in name order', async () => {
    const before = memoryState({ '': { zeta: { content: 'z' }, beta: { content: 'b' }, alpha: { content: 'a' }, gone: { content: 'g' } } });
    const after = memoryState({ '': { alpha: { content: 'aa' }, new: { content: 'n' }, zeta: { content: 'z' }, beta: { content: 'b' } } });
    const result = await diff(before, after);
    expect(result.differences).toEqual([
      { path: '/alpha', change: 'changed', kind: 'file', sizeBefore: 1, sizeAfter: 2, reasons: ['size'] },
      { path: '/gone', change: 'removed', kind: 'file', sizeBefore: 1 },
      { path: '/new', change: 'added', kind: 'file', sizeAfter: 1 },
    ]);
  });

  it('stops when the job is cancelled', async () => {
    const folders: MemoryTree = {};
    for (let index = 0; index < 40; index++) folders[`d${index}`] = { f: { content: 'x' } };
    let checks = 0;
    const job = {
      progress() {},
      throwIfCancelled() {
        if (++checks > 1) throw Object.assign(new Error('cancelled'), { code: 'CANCELLED' });
      },
    };
    await expect(diffStateFiles(memoryState({ '': folders }), memoryState({ '': {} }), { from: 'a', to: 'b', changedRanges: [], job })).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});

describe('GuestRangeSet', () => {
  it('merges overlapping ranges and finds an intersection at either edge', () => {
    const set = new GuestRangeSet([{ offset: 100, length: 10 }, { offset: 0, length: 10 }, { offset: 105, length: 20 }]);
    expect(set.intersects(10, 90)).toBe(false);
    expect(set.intersects(9, 1)).toBe(true);
    expect(set.intersects(124, 1)).toBe(true);
    expect(set.intersects(125, 100)).toBe(false);
    expect(set.intersects(50, 51)).toBe(true);
    expect(new GuestRangeSet([]).intersects(0, 1)).toBe(false);
  });
});
