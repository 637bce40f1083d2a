/**
 * copy-out where the host or the guest makes it hard: a symlink an earlier copy left in the
 * destination (never written through), names as long as a host takes, and a damaged ext folder
 * that contains itself (a walk that would never end). Found by an audit; each failed before.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { copyOut } from '../../../src/shared/qcow2/files/copy-out.ts';
import { diffStateFiles } from '../../../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles, typedGuestPath } from '../../../src/shared/qcow2/files/state-files.ts';
import { debugfs, makeExtImage, qcow2FromRaw } from '../../helpers/guest-filesystems.ts';
import { memoryState } from '../../helpers/memory-state-files.ts';

let folder = '';
beforeEach(() => {
  folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-copy-out-'));
});
afterEach(() => fs.rmSync(folder, { recursive: true, force: true }));

describe('copy-out and the host', () => {
  it('with --force over a symlink an earlier copy restored, the folder replaces the link: nothing lands where it led', async () => {
    const outside = path.join(folder, 'outside');
    fs.mkdirSync(outside);
    const destination = path.join(folder, 'dest');
    fs.mkdirSync(path.join(destination, 'x'), { recursive: true });
    // What copying the earlier state left: x/s, a link out of the destination.
    fs.symlinkSync(outside, path.join(destination, 'x', 's'));
    const current = memoryState({ '': { x: { s: { pwn: { content: 'PWNED\n' } } } } });
    await copyOut(current, '/x', destination, { overwrite: true });
    expect(fs.readdirSync(outside), 'the folder the link led to').toEqual([]);
    expect(fs.lstatSync(path.join(destination, 'x', 's')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(destination, 'x', 's', 'pwn'), 'utf8')).toBe('PWNED\n');
  });

  it('a guest symlink replacing a host one with --force: the link is replaced, its folder untouched', async () => {
    const outside = path.join(folder, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'kept'), 'mine');
    const destination = path.join(folder, 'dest');
    fs.mkdirSync(path.join(destination, 'x'), { recursive: true });
    fs.symlinkSync(outside, path.join(destination, 'x', 's'));
    await copyOut(memoryState({ '': { x: { s: { target: 'elsewhere' } } } }), '/x', destination, { overwrite: true });
    expect(fs.readlinkSync(path.join(destination, 'x', 's'))).toBe('elsewhere');
    expect(fs.readdirSync(outside)).toEqual(['kept']);
  });

  it('--force never replaces a device, pipe or socket: refused, the node left as it was', async () => {
    const pipe = path.join(folder, 'a-pipe');
    execFileSync('mkfifo', [pipe]);
    const state = memoryState({ '': { 'new.txt': { content: 'guest\n' }, sub: { 'inner.txt': { content: 'x\n' } } } });
    for (const source of ['/new.txt', '/sub']) {
      await expect(copyOut(state, source, pipe, { overwrite: true })).rejects.toThrow(/is a device, pipe or socket, not a file/);
      expect(fs.lstatSync(pipe).isFIFO(), source).toBe(true);
    }
  });

  it('names up to 255 bytes are copied (the temporary name beside them is cut to fit)', async () => {
    const long = 'L'.repeat(255);
    const accented = 'é'.repeat(127);
    const state = memoryState({ '': { d: { [long]: { content: 'hello\n' }, [accented]: { content: 'accent\n' }, ok: { content: 'ok\n' } } } });
    const result = await copyOut(state, '/d', folder, { overwrite: false });
    expect(result.skipped).toEqual([]);
    expect(fs.readFileSync(path.join(folder, 'd', long), 'utf8')).toBe('hello\n');
    expect(fs.readFileSync(path.join(folder, 'd', accented), 'utf8')).toBe('accent\n');
    expect(fs.readdirSync(path.join(folder, 'd')).sort()).toEqual([long, accented, 'ok'].sort());
  });

  it('a guest name longer than a host name can be (100 CJK characters: 300 bytes) is skipped and said, the rest of the folder copied', async () => {
    const cjk = `${'日'.repeat(100)}.txt`;
    const state = memoryState({ '': { d: { 'a.txt': { content: 'a\n' }, [cjk]: { content: 'too long\n' }, 'z.txt': { content: 'z\n' } } } });
    const result = await copyOut(state, '/d', folder, { overwrite: false });
    expect(result.skipped).toEqual([{ path: `/d/${cjk}`, reason: 'its name is 304 bytes in UTF-8, longer than the 255 a host file name can be' }]);
    expect(fs.readdirSync(path.join(folder, 'd')).sort()).toEqual(['a.txt', 'z.txt']);
    expect(result.files).toBe(2);
  });
});

describe('copy-out keeps who may read a file', { timeout: 60_000 }, () => {
  it("gives each file and folder the guest's permission bits exactly, whatever the umask (as cp -p): a private key stays private, a read-only folder read-only, a shared folder shared; never setuid or setgid", async () => {
    const raw = path.join(folder, 'perms.img');
    await makeExtImage(raw, 16, { 'home/.ssh/id_rsa': 'secret key\n', 'home/run.sh': '#!/bin/sh\n', 'home/ro/inside.txt': 'kept\n', 'home/notes.txt': 'hello\n', 'home/shared/x': 'x\n', 'home/tmp/y': 'y\n', 'home/open.txt': 'o\n', 'home/su': 's\n' });
    await debugfs(raw, [
      'sif /home/.ssh mode 040700',
      'sif /home/.ssh/id_rsa mode 0100600',
      'sif /home/run.sh mode 0100755',
      'sif /home/ro mode 040555',
      'sif /home/notes.txt mode 0100664',
      'sif /home/shared mode 042775',
      'sif /home/tmp mode 041777',
      'sif /home/open.txt mode 0100666',
      'sif /home/su mode 0104755',
    ]);
    const image = path.join(folder, 'perms.qcow2');
    await qcow2FromRaw(raw, image);
    const files = await openStateFiles(image, 'current');
    const destination = path.join(folder, 'out');
    fs.mkdirSync(destination);
    // The usual umask: it narrowed the copies before (a 0666 file came back 0644, 2775 as 0755: files audit 3).
    const previous = process.umask(0o022);
    try {
      expect((await files.stat('/home/tmp')).permissions).toBe(0o1777);
      expect((await files.stat('/home/su')).permissions).toBe(0o4755);
      await copyOut(files, '/home', destination, { overwrite: false });
    } finally {
      process.umask(previous);
      await files.close();
    }
    const modeOf = (relative: string): string => (fs.statSync(path.join(destination, 'home', relative)).mode & 0o7777).toString(8);
    expect(modeOf('.ssh')).toBe('700');
    expect(modeOf('.ssh/id_rsa')).toBe('600');
    expect(modeOf('run.sh')).toBe('755');
    expect(modeOf('ro')).toBe('555');
    expect(fs.readFileSync(path.join(destination, 'home', 'ro', 'inside.txt'), 'utf8')).toBe('kept\n');
    expect(modeOf('notes.txt')).toBe('664');
    expect(modeOf('open.txt')).toBe('666');
    // The sticky bit stays; setgid (on the folder) and setuid (on the program) do not.
    expect(modeOf('shared')).toBe('775');
    expect(modeOf('tmp')).toBe('1777');
    expect(modeOf('su')).toBe('755');
  });
});

describe('names with a backslash (systemd escapes its unit names so)', { timeout: 60_000 }, () => {
  it('are restored as the guest named them, a link to one still leads to it, and a path typed with one backslash finds it', async () => {
    const unit = 'dev-disk-by\\x2duuid-1234.swap';
    const raw = path.join(folder, 'units.img');
    await makeExtImage(raw, 16, { [`systemd/${unit}`]: '[Swap]\n', [`systemd/swap.target.wants/${unit}`]: { symlink: `/systemd/${unit}` }, 'systemd/back\\slash.txt': 'b\n' });
    const image = path.join(folder, 'units.qcow2');
    await qcow2FromRaw(raw, image);
    const files = await openStateFiles(image, 'current');
    const destination = path.join(folder, 'restored');
    fs.mkdirSync(destination);
    try {
      // Listed with the backslash doubled (as ls -b), typed with one: the same file.
      expect((await files.list('/systemd')).map((entry) => entry.name)).toContain('dev-disk-by\\\\x2duuid-1234.swap');
      expect(await typedGuestPath(files, `/systemd/${unit}`)).toBe('/systemd/dev-disk-by\\\\x2duuid-1234.swap');
      await expect(typedGuestPath(files, '/systemd/none\\here')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await copyOut(files, '/systemd', destination, { overwrite: false });
    } finally {
      await files.close();
    }
    const restored = path.join(destination, 'systemd');
    expect(fs.readdirSync(restored).sort()).toEqual(['back\\slash.txt', unit, 'swap.target.wants'].sort());
    expect(fs.readFileSync(path.join(restored, unit), 'utf8')).toBe('[Swap]\n');
    const link = path.join(restored, 'swap.target.wants', unit);
    expect(fs.readlinkSync(link)).toBe(`/systemd/${unit}`);
  });
});

describe('a sparse guest file (a lastlog of terabytes, a few blocks of data)', { timeout: 60_000 }, () => {
  it('is copied by reading only where it holds data: the holes stay holes, the bytes the same', async () => {
    const source = path.join(folder, 'sparse-src');
    fs.mkdirSync(source);
    const sparse = path.join(source, 'lastlog');
    const size = 20 * 2 ** 30 + 123;
    fs.writeFileSync(sparse, 'head of the file');
    fs.truncateSync(sparse, size);
    const handle = fs.openSync(sparse, 'r+');
    fs.writeSync(handle, Buffer.from('in the middle'), 0, 13, 7 * 2 ** 30);
    fs.writeSync(handle, Buffer.from('tail'), 0, 4, size - 4);
    fs.closeSync(handle);
    const raw = path.join(folder, 'sparse.img');
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', source, raw, '16M']);
    const image = path.join(folder, 'sparse.qcow2');
    await qcow2FromRaw(raw, image);
    const files = await openStateFiles(image, 'current');
    let bytesRead = 0;
    const counting = { ...files, volumes: files.volumes, list: files.list.bind(files), stat: files.stat.bind(files), extents: files.extents.bind(files), dataRanges: files.dataRanges?.bind(files), close: files.close.bind(files), read: (guestPath: string, buffer: Uint8Array, offset: number) => ((bytesRead += buffer.length), files.read(guestPath, buffer, offset)) };
    const target = path.join(folder, 'lastlog-restored');
    try {
      const result = await copyOut(counting, '/lastlog', target, { overwrite: false });
      expect(result.bytes).toBe(size);
    } finally {
      await files.close();
    }
    // Three 4 KiB blocks of data (it read 20 GiB of zeros before: files audit 4).
    expect(bytesRead).toBeLessThan(2 ** 20);
    expect(fs.statSync(target).size).toBe(size);
    expect(fs.statSync(target).blocks * 512).toBeLessThan(2 ** 20);
    const check = fs.openSync(target, 'r');
    const read = (offset: number, length: number): string => {
      const bytes = Buffer.alloc(length);
      fs.readSync(check, bytes, 0, length, offset);
      return bytes.toString('latin1');
    };
    try {
      expect(read(0, 16)).toBe('head of the file');
      expect(read(7 * 2 ** 30, 13)).toBe('in the middle');
      expect(read(size - 4, 4)).toBe('tail');
      expect(read(3 * 2 ** 30, 8)).toBe('\0'.repeat(8));
    } finally {
      fs.closeSync(check);
    }
  });
});

describe('one damaged entry in an ext folder', { timeout: 60_000 }, () => {
  it('is listed and skipped by a folder copy, the others listed and copied (a symlink claiming 4 GiB in its inode failed the whole folder: files audit 6)', async () => {
    const raw = path.join(folder, 'badlink.img');
    await makeExtImage(raw, 16, { 'etc/a.conf': 'a\n', 'etc/link': { symlink: 'a.conf' }, 'etc/z.conf': 'z\n' });
    await debugfs(raw, ['sif /etc/link size 0xffffffff']);
    const image = path.join(folder, 'badlink.qcow2');
    await qcow2FromRaw(raw, image);
    const files = await openStateFiles(image, 'current');
    const destination = path.join(folder, 'badlink-out');
    fs.mkdirSync(destination);
    try {
      const listed = await files.list('/etc');
      expect(listed.map((entry) => [entry.name, entry.kind, entry.target])).toEqual([
        ['a.conf', 'file', undefined],
        ['link', 'symlink', undefined],
        ['z.conf', 'file', undefined],
      ]);
      // Asked for by itself, it says why.
      await expect(files.stat('/etc/link')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      const result = await copyOut(files, '/etc', destination, { overwrite: false });
      expect(result.files).toBe(2);
      expect(result.skipped).toEqual([{ path: '/etc/link', reason: 'where the link leads cannot be read (the filesystem is damaged there)' }]);
    } finally {
      await files.close();
    }
    expect(fs.readdirSync(path.join(destination, 'etc')).sort()).toEqual(['a.conf', 'z.conf']);
  });
});

describe('a damaged ext folder that contains itself', { timeout: 60_000 }, () => {
  it('copy-out skips the loop and copies the rest; files-diff reports it skipped; neither runs away', async () => {
    const raw = path.join(folder, 'fs.img');
    await makeExtImage(raw, 16, { 'a/b/file.txt': 'inside\n', 'a/other.txt': 'other\n' });
    const before = path.join(folder, 'before.qcow2');
    await qcow2FromRaw(raw, before);
    // a/b/loop names a's inode: a hard link to a folder, which only damage makes.
    await debugfs(raw, ['ln a a/b/loop']);
    const looped = path.join(folder, 'looped.qcow2');
    await qcow2FromRaw(raw, looped);

    const files = await openStateFiles(looped, 'current');
    try {
      const destination = path.join(folder, 'out');
      fs.mkdirSync(destination);
      const result = await copyOut(files, '/a', destination, { overwrite: false });
      expect(fs.readFileSync(path.join(destination, 'a', 'b', 'file.txt'), 'utf8')).toBe('inside\n');
      expect(fs.readFileSync(path.join(destination, 'a', 'other.txt'), 'utf8')).toBe('other\n');
      expect(result.skipped.map((skipped) => skipped.path)).toEqual(['/a/b/loop']);
      expect(result.skipped[0]?.reason).toMatch(/folder inside itself/);
      await expect(files.list('/a/b/loop')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
    } finally {
      await files.close();
    }

    const earlier = await openStateFiles(before, 'current');
    const later = await openStateFiles(looped, 'current');
    try {
      const diff = await diffStateFiles(earlier, later, { from: 'before', to: 'looped', changedRanges: [{ offset: 0, length: 16 * 1024 * 1024 }] });
      expect(diff.differences.map((difference) => `${difference.change} ${difference.path}`)).toContain('added /a/b/loop');
      expect(diff.skipped.some((skipped) => skipped.path === '/a/b/loop' && /folder inside itself/.test(skipped.reason))).toBe(true);
    } finally {
      await earlier.close();
      await later.close();
    }
  });
});

describe('damaged ext folders a walk would meet again', { timeout: 120_000 }, () => {
  it('a folder kept inline (inline_data) linking the root: copy-out and files-diff skip it once, nothing copied twice', async () => {
    const raw = path.join(folder, 'inline.img');
    await makeExtImage(raw, 16, { 'a/big.bin': 'x'.repeat(100_000) }, { mkfsArgs: ['-O', 'inline_data'] });
    const before = path.join(folder, 'inline-before.qcow2');
    await qcow2FromRaw(raw, before);
    await debugfs(raw, ['ln / a/up']);
    const looped = path.join(folder, 'inline-looped.qcow2');
    await qcow2FromRaw(raw, looped);
    const files = await openStateFiles(looped, 'current');
    try {
      const destination = path.join(folder, 'out');
      fs.mkdirSync(destination);
      const result = await copyOut(files, '/', destination, { overwrite: false });
      expect(result.files).toBe(1);
      expect(result.skipped.map((skipped) => skipped.path)).toEqual(['/a/up']);
      expect(result.skipped[0]?.reason).toMatch(/same folder as one copied already/);
    } finally {
      await files.close();
    }
    const earlier = await openStateFiles(before, 'current');
    const later = await openStateFiles(looped, 'current');
    try {
      const diff = await diffStateFiles(earlier, later, { from: 'before', to: 'looped', changedRanges: [{ offset: 0, length: 16 * 1024 * 1024 }] });
      expect(diff.skipped.filter((skipped) => (skipped.path ?? '').startsWith('/a/up')).length).toBe(1);
    } finally {
      await earlier.close();
      await later.close();
    }
  });

  it('one folder under two names at each of 20 levels (2^20 paths): each folder is copied and compared once', async () => {
    const raw = path.join(folder, 'doubled.img');
    await makeExtImage(raw, 8, { 'p/leaf.txt': 'leaf\n' }, { mkfsArgs: ['-b', '1024'] });
    const commands: string[] = ['ln /p /q'];
    let level = '/p';
    for (let depth = 1; depth < 20; depth++) {
      commands.push(`mkdir ${level}/p`, `ln ${level}/p ${level}/q`);
      level = `${level}/p`;
    }
    await debugfs(raw, commands);
    const doubled = path.join(folder, 'doubled.qcow2');
    await qcow2FromRaw(raw, doubled);
    const files = await openStateFiles(doubled, 'current');
    try {
      const destination = path.join(folder, 'out');
      fs.mkdirSync(destination);
      const result = await copyOut(files, '/', destination, { overwrite: false });
      expect(result.files).toBe(1);
      expect(result.folders).toBe(1 + 1 + 20);
      expect(result.skipped.filter((skipped) => /same folder/.test(skipped.reason)).length).toBe(20);
    } finally {
      await files.close();
    }
    const before = await openStateFiles(doubled, 'current');
    const after = await openStateFiles(doubled, 'current');
    try {
      const diff = await diffStateFiles(before, after, { from: 'a', to: 'b', changedRanges: [{ offset: 0, length: 8 * 1024 * 1024 }] });
      expect(diff.differences).toEqual([]);
      expect(diff.skipped.length).toBe(20);
    } finally {
      await before.close();
      await after.close();
    }
  });
});

describe('big and sparse guest files', { timeout: 120_000 }, () => {
  it('a sparse 1 GiB file is copied sparse (its holes stay holes); a size no ext file can have is refused, not written out', async () => {
    const content = path.join(folder, 'content');
    fs.mkdirSync(content);
    const sparse = path.join(content, 'sparse.bin');
    const fd = fs.openSync(sparse, 'w');
    fs.writeSync(fd, Buffer.from('start'), 0, 5, 0);
    fs.writeSync(fd, Buffer.from('end'), 0, 3, 2 ** 30 - 3);
    fs.closeSync(fd);
    fs.writeFileSync(path.join(content, 'small.txt'), 'small\n');
    const raw = path.join(folder, 'sparse.img');
    execFileSync('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, raw, '16M']);
    await debugfs(raw, ['sif /small.txt size 0x4000000000000000']);
    const image = path.join(folder, 'sparse.qcow2');
    await qcow2FromRaw(raw, image);
    const files = await openStateFiles(image, 'current');
    try {
      const destination = path.join(folder, 'out');
      fs.mkdirSync(destination);
      await copyOut(files, '/sparse.bin', destination, { overwrite: false });
      const copied = path.join(destination, 'sparse.bin');
      expect(fs.statSync(copied).size).toBe(2 ** 30);
      expect(fs.statSync(copied).blocks * 512).toBeLessThan(1024 * 1024);
      const handle = fs.openSync(copied, 'r');
      const tail = Buffer.alloc(3);
      fs.readSync(handle, tail, 0, 3, 2 ** 30 - 3);
      fs.closeSync(handle);
      expect(tail.toString()).toBe('end');
      await expect(copyOut(files, '/small.txt', destination, { overwrite: false })).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      expect(fs.readdirSync(destination)).toEqual(['sparse.bin']);
    } finally {
      await files.close();
    }
  });
});
