/**
 * files-diff's shortcut through folders whose names and inodes lie in bytes the two states share
 * (unchangedFolder: only the later state's entries are read). It must still see what changed below
 * such a folder: a file's bytes rewritten behind the filesystem's back (same inode, same folder
 * blocks), one inode changed by debugfs while its folder's blocks and inode stayed as they were,
 * and a path that leads to another (itself unchanged) folder in the later state.
 * The result must equal the full walk's (both states listed), and the shortcut must have been taken.
 * A later state saved in use (its journal holding a change not yet written home) still takes the
 * shortcut where the journal touched nothing, and sees the change the journal holds.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../src/shared/qcow2/files/files-diff.ts';
import { readDiff } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { writeChangedPieces } from '../../helpers/changed-ext-disk.ts';
import { vouchingOpener } from '../../helpers/vouching-opener.ts';
import { debugfs, debugfsFacts, makeExtImage } from '../../helpers/guest-filesystems.ts';
import { qemuImg, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';

const FILES = 320;
let folder: TempDir;
let disk = '';
/** The raw filesystem of the state before. */
let beforeBytes = new Uint8Array(0);
/** The file whose inode debugfs changes: the one furthest in the inode table from its folder's inode. */
let touched = '';

beforeAll(async () => {
  folder = tempDir();
  const raw = folder.file('disk.raw');
  const tree: Record<string, string | Uint8Array> = { 'a/one.txt': 'one\n', 'b/two.txt': 'two\n', 'quiet/data.bin': new Uint8Array(256 * 1024).map((_, index) => index % 251) };
  for (let index = 0; index < FILES; index++) tree[`quiet/f${String(index).padStart(3, '0')}.txt`] = `file ${index}\n`;
  await makeExtImage(raw, 32, tree, { mkfsArgs: ['-b', '4096', '-I', '256'] });
  disk = folder.file('disk.qcow2');
  await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
  await qemuImg(['snapshot', '-c', 'before', disk]);
  const before = new Uint8Array(fs.readFileSync(raw));
  beforeBytes = before;

  // Inode numbers from debugfs: the file furthest from the folder lies in another 64 KiB of the inode table.
  const listing = (await runTool('debugfs', ['-R', 'ls -l quiet', raw])).stdout;
  const inodes = [...listing.matchAll(/^\s*(\d+)\s+\d+\s+\(\d+\)\s+\d+\s+\d+\s+\d+\s+\S+\s+\S+\s+(f\d+\.txt)\s*$/gm)].map((match) => ({ inode: Number(match[1]), name: match[2]! }));
  expect(inodes).toHaveLength(FILES);
  const furthest = inodes.reduce((best, entry) => (entry.inode > best.inode ? entry : best));
  touched = `quiet/${furthest.name}`;
  const quietInode = Number((await runTool('debugfs', ['-R', 'stat quiet', raw])).stdout.match(/Inode: (\d+)/)?.[1]);
  expect(furthest.inode - quietInode).toBeGreaterThan(300);

  // /a becomes b's folder (linked, neither inode touched): the same path, another inode, both unchanged.
  await debugfs(raw, [`sif ${touched} mtime 20200101120000`, 'unlink a', 'link b a', 'unlink b']);
  // data.bin's bytes in the middle of the file, behind the filesystem's back: same size, same time, same inode.
  const data = await debugfsFacts(raw, 'quiet/data.bin');
  const middle = (data.blocks[32] ?? 0) * data.blockBytes;
  expect(middle).toBeGreaterThan(0);
  const fd = fs.openSync(raw, 'r+');
  fs.writeSync(fd, Buffer.from('changed behind its back'), 0, 23, middle + 100);
  fs.closeSync(fd);
  await writeChangedPieces(disk, before, new Uint8Array(fs.readFileSync(raw)), path.dirname(raw));
});
afterAll(() => folder.cleanup());

/** Opens a state of the disk; records the folders unchangedFolder vouched for, or hides the method (the full walk). */
const opener = (shortcut: boolean, vouched: string[]) => vouchingOpener(disk, shortcut, vouched);

describe('files-diff through folders the states share', () => {
  it('still sees a file rewritten behind the filesystem’s back, an inode changed in an unchanged folder, and a path that leads to another folder', async () => {
    const vouched: string[] = [];
    const ranges = () => readDiff(disk, 'before', 'current').ranges;
    const result = await diffStatesByName(opener(true, vouched), 'before', 'current', ranges);
    expect(vouched).toContain('/quiet');
    const size = `file ${Number(touched.slice(7, 10))}\n`.length;
    expect(result.differences).toEqual([
      { path: '/a/one.txt', change: 'removed', kind: 'file', sizeBefore: 4 },
      { path: '/a/two.txt', change: 'added', kind: 'file', sizeAfter: 4 },
      { path: '/b', change: 'removed', kind: 'directory', sizeBefore: 0 },
      { path: '/b/two.txt', change: 'removed', kind: 'file', sizeBefore: 4 },
      { path: '/quiet/data.bin', change: 'changed', kind: 'file', sizeBefore: 256 * 1024, sizeAfter: 256 * 1024, reasons: ['content'] },
      { path: `/${touched}`, change: 'changed', kind: 'file', sizeBefore: size, sizeAfter: size, reasons: ['mtime'] },
    ]);
    const full = await diffStatesByName(opener(false, []), 'before', 'current', ranges);
    expect(full).toEqual(result);
  });

  it('gives the full walk’s result the other way round too', async () => {
    const vouched: string[] = [];
    const ranges = () => readDiff(disk, 'current', 'before').ranges;
    const result = await diffStatesByName(opener(true, vouched), 'current', 'before', ranges);
    expect(vouched).toContain('/quiet');
    expect(result).toEqual(await diffStatesByName(opener(false, []), 'current', 'before', ranges));
    expect(result.differences.map((difference) => difference.path)).toEqual(['/a/one.txt', '/a/two.txt', '/b', '/b/two.txt', '/quiet/data.bin', `/${touched}`]);
  });
});

describe('files-diff through folders the states share, the later one saved in use', () => {
  it('takes the shortcut where the journal touched nothing, and sees an inode the journal alone changed', async () => {
    // The state before, saved again in use: one quiet file's inode changed in a copy, and the blocks
    // that changed written into the journal only (not home), as a running guest leaves them. The guest
    // ranges that differ are then the journal's and the superblock's, not the inode's.
    const beforeRaw = folder.file('before.raw');
    fs.writeFileSync(beforeRaw, beforeBytes);
    const listing = (await runTool('debugfs', ['-R', 'ls -l quiet', beforeRaw])).stdout;
    const inodes = [...listing.matchAll(/^\s*(\d+)\s+\d+\s+\(\d+\)\s+\d+\s+\d+\s+\d+\s+\S+\s+\S+\s+(f\d+\.txt)\s*$/gm)].map((match) => ({ inode: Number(match[1]), name: match[2]! }));
    const quietInode = Number((await runTool('debugfs', ['-R', 'stat quiet', beforeRaw])).stdout.match(/Inode: (\d+)/)?.[1]);
    // Far from the folder's inode: another block of the inode table.
    const far = inodes.reduce((best, entry) => (entry.inode > best.inode ? entry : best));
    expect(far.inode - quietInode).toBeGreaterThan(32);
    const changedCopy = folder.file('journal-change.raw');
    fs.copyFileSync(beforeRaw, changedCopy);
    await debugfs(changedCopy, [`sif quiet/${far.name} mtime 20210304050607`]);
    const block = 4096;
    const original = fs.readFileSync(beforeRaw);
    const changed = fs.readFileSync(changedCopy);
    const blocks: number[] = [];
    for (let at = 0; at < original.length; at += block) if (!original.subarray(at, at + block).equals(changed.subarray(at, at + block))) blocks.push(at / block);
    expect(blocks.length).toBeGreaterThan(0);
    const contents = folder.file('journal-blocks.bin');
    fs.writeFileSync(contents, Buffer.concat(blocks.map((number) => changed.subarray(number * block, (number + 1) * block))));
    const inUse = folder.file('in-use.raw');
    fs.copyFileSync(beforeRaw, inUse);
    await debugfs(inUse, ['jo', `jw -b ${blocks.join(',')} ${contents}`, 'jc']);
    expect((await runTool('dumpe2fs', ['-h', inUse])).stdout).toMatch(/needs_recovery/);
    const inUseDisk = folder.file('in-use.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', beforeRaw, inUseDisk]);
    await qemuImg(['snapshot', '-c', 'before', inUseDisk]);
    await writeChangedPieces(inUseDisk, beforeBytes, new Uint8Array(fs.readFileSync(inUse)), path.dirname(inUse));

    const open = (shortcut: boolean, found: string[]) => vouchingOpener(inUseDisk, shortcut, found);
    const vouched: string[] = [];
    const ranges = () => readDiff(inUseDisk, 'before', 'current').ranges;
    const result = await diffStatesByName(open(true, vouched), 'before', 'current', ranges);
    expect(vouched).toContain('/quiet');
    expect(result.differences).toEqual([{ path: `/quiet/${far.name}`, change: 'changed', kind: 'file', sizeBefore: expect.any(Number), sizeAfter: expect.any(Number), reasons: ['mtime'] }]);
    expect(result).toEqual(await diffStatesByName(open(false, []), 'before', 'current', ranges));
  });
});
