/**
 * A state's files as the tools put them there: ext filesystems made by mke2fs -d and changed by
 * debugfs, on a whole disk, behind an MBR (with logical partitions) and a GPT, turned into qcow2
 * by qemu-img with snapshots between changes, and a LUKS-encrypted disk. Listings, sizes, mtimes,
 * symlinks, bytes and block positions are compared with what debugfs reads in the same images.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { openStateFiles, stateFilesOf, type StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { openGuestReader } from '../../../src/shared/qcow2/image/image-format.ts';
import type { GuestFileEntry } from '../../../src/shared/qcow2/model.ts';
import { createLuksImage, imageOpts, secret } from '../../helpers/encrypted-images.ts';
import { debugfs, debugfsFacts, makeExtImage, makePartitionedDisk, MiB, placeImage, qcow2FromRaw, qemuSnapshot, writeRawIntoQcow2 } from '../../helpers/guest-filesystems.ts';
import { runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';

vi.setConfig({ testTimeout: 60_000 });

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Bytes no two files share, so a read from the wrong place shows. */
function pattern(length: number, seed: number): Uint8Array {
  const bytes = new Uint8Array(length);
  let state = seed * 2654435761;
  for (let index = 0; index < length; index++) {
    state = (state * 1103515245 + 12345) >>> 0;
    bytes[index] = state >>> 24;
  }
  return bytes;
}

async function readAll(files: StateFiles, path: string): Promise<Uint8Array> {
  const { size } = await files.stat(path);
  const bytes = new Uint8Array(size);
  let done = 0;
  while (done < size) {
    const count = await files.read(path, bytes.subarray(done, Math.min(size, done + 100_000)), done);
    expect(count).toBeGreaterThan(0);
    done += count;
  }
  expect(await files.read(path, new Uint8Array(16), size)).toBe(0);
  return bytes;
}

function names(entries: GuestFileEntry[]): string[] {
  return entries.map((entry) => entry.name);
}

async function withFiles<T>(image: string, state: string, use: (files: StateFiles) => Promise<T>, passphrase?: string): Promise<T> {
  const files = await openStateFiles(image, state, passphrase === undefined ? {} : { passphrase });
  try {
    return await use(files);
  } finally {
    await files.close();
  }
}

const BIG = pattern(3 * MiB + 12345, 1);
const SMALL = 'hello from the guest\n';

describe('a whole-disk ext4 filesystem (no partition table)', () => {
  let fsImage: string;
  let qcow2: string;
  beforeAll(async () => {
    fsImage = folder.file('whole.ext4');
    await makeExtImage(fsImage, 32, { 'etc/hostname': 'guest\n', 'etc/big.bin': BIG, 'hello.txt': SMALL, 'etc/link': { symlink: '../hello.txt' }, 'empty': { folder: true } }, { label: 'rootfs' });
    // hello.txt's mtime has nanoseconds (the inode's extra field: 678,771,950 ns << 2, epoch bits 0).
    await debugfs(fsImage, ['set_inode_field /etc/hostname mtime 201501020304', 'set_inode_field /etc/big.bin mtime @1600000000', 'set_inode_field /hello.txt mtime @1767323045', 'set_inode_field /hello.txt mtime_extra 0xa1d4f3b8']);
    qcow2 = folder.file('whole.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
  });

  it('is one volume named "" whose root is the disk\'s root, labelled as mkfs labelled it', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect(files.volumes).toEqual([{ name: '', offset: 0, length: 32 * MiB, table: 'none', filesystem: 'ext', label: 'rootfs' }]);
      expect(names(await files.list('/'))).toEqual(['empty', 'etc', 'hello.txt', 'lost+found']);
      expect(names(await files.list('/etc/'))).toEqual(['big.bin', 'hostname', 'link']);
      expect(await files.list('/empty')).toEqual([]);
    });
  });

  it('gives sizes, mtimes and symlink targets as debugfs reads them', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      const entries = await files.list('/etc');
      for (const name of ['big.bin', 'hostname']) {
        const facts = await debugfsFacts(fsImage, `/etc/${name}`);
        const entry = entries.find((each) => each.name === name);
        expect(entry).toMatchObject({ path: `/etc/${name}`, kind: 'file', size: facts.size, mtimeMs: facts.mtimeMs });
      }
      expect(entries.find((each) => each.name === 'hostname')?.mtimeMs).toBe(Date.UTC(2015, 0, 2, 3, 4));
      expect(entries.find((each) => each.name === 'big.bin')?.mtimeMs).toBe(1600000000 * 1000);
      // Milliseconds from the nanoseconds ext4 keeps, as debugfs shows them.
      expect((await files.stat('/hello.txt')).mtimeMs).toBe(1_767_323_045_678);
      expect((await debugfsFacts(fsImage, '/hello.txt')).mtimeMs).toBe(1_767_323_045_678);
      expect(await files.stat('/etc/link')).toMatchObject({ kind: 'symlink', target: '../hello.txt', size: '../hello.txt'.length });
      expect(await files.stat('/etc')).toMatchObject({ name: 'etc', kind: 'directory', size: 0 });
    });
  });

  it('reads the bytes mkfs put in each file', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect(await readAll(files, '/etc/big.bin')).toEqual(BIG);
      expect(new TextDecoder().decode(await readAll(files, '/hello.txt'))).toBe(SMALL);
      const middle = new Uint8Array(1000);
      expect(await files.read('/etc/big.bin', middle, 2 * MiB + 7)).toBe(1000);
      expect(middle).toEqual(BIG.subarray(2 * MiB + 7, 2 * MiB + 1007));
    });
  });

  it('places a file\'s content on the blocks debugfs lists', async () => {
    const facts = await debugfsFacts(fsImage, '/etc/big.bin');
    const blockBytes = facts.blockBytes;
    await withFiles(qcow2, 'current', async (files) => {
      const ranges = await files.extents('/etc/big.bin');
      const blocks = (ranges ?? []).flatMap((range) => Array.from({ length: range.length / blockBytes }, (_, index) => range.offset / blockBytes + index));
      expect(blocks).toEqual(facts.blocks);
    });
  });

  it('refuses what is not there or not of the right kind, with typed errors', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      await expect(files.list('/nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await expect(files.stat('/etc/nope')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await expect(files.list('/hello.txt')).rejects.toMatchObject({ code: 'NOT_A_DIRECTORY' });
      await expect(files.read('/etc', new Uint8Array(8), 0)).rejects.toMatchObject({ code: 'IS_A_DIRECTORY' });
      await expect(files.read('/etc/link', new Uint8Array(8), 0)).rejects.toMatchObject({ code: 'NOT_A_FILE' });
    });
  });

  it('never writes the image', async () => {
    const before = fs.readFileSync(qcow2);
    await withFiles(qcow2, 'current', async (files) => {
      await readAll(files, '/etc/big.bin');
      await files.list('/etc');
    });
    expect(fs.readFileSync(qcow2).equals(before)).toBe(true);
  });
});

describe('holes and preallocated (uninitialised) blocks', () => {
  let fsImage: string;
  let qcow2: string;
  const sparse = new Uint8Array(3 * MiB + 7000);
  beforeAll(async () => {
    sparse.fill(0x41, 0, 5000);
    sparse.fill(0x42, 3 * MiB);
    fsImage = folder.file('holes.ext4');
    await makeExtImage(fsImage, 16, {});
    const host = folder.file('sparse.host');
    const handle = fs.openSync(host, 'w');
    fs.writeSync(handle, sparse.subarray(0, 5000), 0, 5000, 0);
    fs.writeSync(handle, sparse.subarray(3 * MiB), 0, 7000, 3 * MiB);
    fs.closeSync(handle);
    // debugfs's write keeps the host file's hole; fallocate makes uninitialised extents.
    await debugfs(fsImage, [`write ${host} /sparse`, 'write /dev/null /prealloc', 'fallocate /prealloc 0 99', 'sif /prealloc size 51200']);
    qcow2 = folder.file('holes.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
  });

  it('reads a hole as zeros and places only the written blocks', async () => {
    const facts = await debugfsFacts(fsImage, '/sparse');
    expect(facts.blocks.length).toBeLessThan(20);
    await withFiles(qcow2, 'current', async (files) => {
      expect(await readAll(files, '/sparse')).toEqual(sparse);
      const ranges = (await files.extents('/sparse')) ?? [];
      const blocks = ranges.flatMap((range) => Array.from({ length: range.length / facts.blockBytes }, (_, index) => range.offset / facts.blockBytes + index));
      expect(blocks).toEqual(facts.blocks);
    });
  });

  it('reads preallocated blocks as zeros, and they hold no content', async () => {
    const stat = await runTool('debugfs', ['-R', 'stat /prealloc', fsImage]);
    expect(stat.stdout).toMatch(/\(0-99\[u\]\)/);
    await withFiles(qcow2, 'current', async (files) => {
      expect(await readAll(files, '/prealloc')).toEqual(new Uint8Array(51200));
      expect(await files.extents('/prealloc')).toEqual([]);
    });
  });
});

describe('inline data (small files and folders kept in their inodes)', () => {
  let qcow2: string;
  beforeAll(async () => {
    const fsImage = folder.file('inline.ext4');
    await makeExtImage(
      fsImage,
      16,
      {
        'small/tiny.txt': 'fits in the inode\n',
        'small/link': { symlink: 'tiny.txt' },
        'larger.bin': pattern(20_000, 7),
        // Targets past the inode's 60 bytes: the rest is kept in its system.data attribute.
        ilink2: { symlink: 'q'.repeat(70) },
        'small/deep': { symlink: `${'x/'.repeat(60)}target` },
      },
      { mkfsArgs: ['-O', 'inline_data'] },
    );
    const stat = await runTool('debugfs', ['-R', 'stat /small/tiny.txt', fsImage]);
    expect(stat.stdout).toContain('Size of inline data');
    qcow2 = folder.file('inline.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
  });

  it('lists an inline folder and reads an inline file', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect(await files.list('/small')).toMatchObject([
        { name: 'deep', kind: 'symlink' },
        { name: 'link', kind: 'symlink', target: 'tiny.txt' },
        { name: 'tiny.txt', kind: 'file', size: 18 },
      ]);
      expect(new TextDecoder().decode(await readAll(files, '/small/tiny.txt'))).toBe('fits in the inode\n');
      expect(await files.extents('/small/tiny.txt')).toBeNull();
      expect(await readAll(files, '/larger.bin')).toEqual(pattern(20_000, 7));
    });
  });

  it('reads an inline symlink target longer than the inode holds, to its length and no further', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect((await files.list('/')).find((entry) => entry.name === 'ilink2')).toMatchObject({ kind: 'symlink', target: 'q'.repeat(70) });
      expect((await files.list('/small')).find((entry) => entry.name === 'deep')).toMatchObject({ kind: 'symlink', target: `${'x/'.repeat(60)}target` });
    });
  });
});

describe('ext names that are not UTF-8 (Linux allows any bytes but / and NUL)', () => {
  it('two names that differ only in bytes that are not UTF-8 stay two files, shown as ls -b shows them, each read by its name', async () => {
    const content = folder.file('not-utf8-content');
    fs.mkdirSync(content);
    const name = (...bytes: number[]): Buffer => Buffer.concat([Buffer.from(`${content}/`), Buffer.from('n'), Buffer.from(bytes)]);
    fs.writeFileSync(name(0xff), 'AAA');
    fs.writeFileSync(name(0xfe), 'BBBB');
    fs.writeFileSync(name(0xc3, 0xa9), 'valid é');
    const fsImage = folder.file('not-utf8.ext4');
    await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-d', content, fsImage, '8M']);
    const qcow2 = folder.file('not-utf8.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
    await withFiles(qcow2, 'current', async (files) => {
      const listed = (await files.list('/')).filter((entry) => entry.kind === 'file');
      expect(listed.map((entry) => [entry.name, entry.size])).toEqual([
        ['n\\xfe', 4],
        ['n\\xff', 3],
        ['né', 7 + 1],
      ]);
      expect(new TextDecoder().decode(await readAll(files, '/n\\xfe'))).toBe('BBBB');
      expect(new TextDecoder().decode(await readAll(files, '/n\\xff'))).toBe('AAA');
    });
  });

  it('a name holding a backslash (the four characters \\xff) is not the name holding the byte 0xff: \\\\ spells the backslash, inline folders too', async () => {
    const content = folder.file('backslash-content');
    fs.mkdirSync(content);
    fs.writeFileSync(Buffer.concat([Buffer.from(`${content}/y`), Buffer.from([0xff])]), 'byte\n');
    fs.writeFileSync(`${content}/y\\xff`, 'literal!\n');
    fs.writeFileSync(`${content}/a\\b`, 'slash\n');
    for (const features of ['^inline_data', 'inline_data']) {
      const fsImage = folder.file(`backslash-${features}.ext4`);
      await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', features, '-d', content, fsImage, '8M']);
      const qcow2 = folder.file(`backslash-${features}.qcow2`);
      await qcow2FromRaw(fsImage, qcow2);
      await withFiles(qcow2, 'current', async (files) => {
        const listed = (await files.list('/')).filter((entry) => entry.kind === 'file');
        expect(listed.map((entry) => [entry.name, entry.size]).sort(), features).toEqual([
          ['a\\\\b', 6],
          ['y\\\\xff', 9],
          ['y\\xff', 5],
        ]);
        expect(new TextDecoder().decode(await readAll(files, '/y\\\\xff')), features).toBe('literal!\n');
        expect(new TextDecoder().decode(await readAll(files, '/a\\\\b')), features).toBe('slash\n');
        // The byte 0xff, also in a folder kept inline (libext2fs, which read those before, took names as UTF-8 text).
        expect(new TextDecoder().decode(await readAll(files, '/y\\xff')), features).toBe('byte\n');
      });
    }
  });
});

describe('inline data read from the inode itself, for names that are not UTF-8 and for any block size', () => {
  it('a folder kept inline lists two names that differ only in bytes that are not UTF-8, and each small file reads', async () => {
    const content = folder.file('inline-bytes');
    fs.mkdirSync(`${content}/d`, { recursive: true });
    fs.writeFileSync(Buffer.concat([Buffer.from(`${content}/d/a`), Buffer.from([0xff])]), 'ff\n');
    fs.writeFileSync(Buffer.concat([Buffer.from(`${content}/d/a`), Buffer.from([0xfe])]), 'fe\n');
    fs.writeFileSync(Buffer.concat([Buffer.from(`${content}/bad`), Buffer.from([0xff]), Buffer.from('name')]), 'inline\n');
    const fsImage = folder.file('inline-bytes.ext4');
    await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-O', 'inline_data', '-d', content, fsImage, '8M']);
    expect((await runTool('debugfs', ['-R', 'stat /d', fsImage])).stdout).toContain('Size of inline data');
    const qcow2 = folder.file('inline-bytes.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
    await withFiles(qcow2, 'current', async (files) => {
      expect((await files.list('/d')).map((entry) => [entry.name, entry.size])).toEqual([
        ['a\\xfe', 3],
        ['a\\xff', 3],
      ]);
      expect(new TextDecoder().decode(await readAll(files, '/d/a\\xff'))).toBe('ff\n');
      expect(new TextDecoder().decode(await readAll(files, '/d/a\\xfe'))).toBe('fe\n');
      expect(new TextDecoder().decode(await readAll(files, '/bad\\xffname'))).toBe('inline\n');
    });
  });

  for (const blockBytes of [32768, 65536]) {
    it(`${blockBytes / 1024} KiB blocks: a file, a folder and a symlink kept inline read (with its attribute past the first 60 bytes)`, async () => {
      const fsImage = folder.file(`inline-${blockBytes}.ext4`);
      await makeExtImage(
        fsImage,
        64,
        { 'small/tiny.txt': 'fits in the inode\n', 'small/longer.txt': 'y'.repeat(120), 'ilink': { symlink: 'z'.repeat(80) } },
        { mkfsArgs: ['-b', String(blockBytes), '-O', 'inline_data', '-I', '512'] },
      );
      expect((await runTool('debugfs', ['-R', 'stat /small/longer.txt', fsImage])).stdout).toContain('Size of inline data');
      const qcow2 = folder.file(`inline-${blockBytes}.qcow2`);
      await qcow2FromRaw(fsImage, qcow2);
      await withFiles(qcow2, 'current', async (files) => {
        expect((await files.list('/small')).map((entry) => entry.name)).toEqual(['longer.txt', 'tiny.txt']);
        expect(new TextDecoder().decode(await readAll(files, '/small/tiny.txt'))).toBe('fits in the inode\n');
        expect(new TextDecoder().decode(await readAll(files, '/small/longer.txt'))).toBe('y'.repeat(120));
        expect((await files.list('/')).find((entry) => entry.name === 'ilink')).toMatchObject({ kind: 'symlink', target: 'z'.repeat(80) });
      });
    });
  }
});

describe('an ext4 folder the guest keeps case-insensitive (casefold)', () => {
  it('finds a name in any case there, as the guest does, and only there', async () => {
    const fsImage = folder.file('casefold.ext4');
    await makeExtImage(fsImage, 16, { 'plain/MixedCase.TXT': 'exact case only\n' }, { mkfsArgs: ['-O', 'casefold'] });
    const content = folder.file('casefold-content.txt');
    fs.writeFileSync(content, 'any case\n');
    // An empty folder made case-insensitive (EXT4_CASEFOLD_FL with extents), then filled.
    await debugfs(fsImage, ['mkdir cf', 'set_inode_field cf flags 0x40080000', `write ${content} cf/MixedCase.TXT`, `write ${content} cf/Ärger.txt`]);
    const qcow2 = folder.file('casefold.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
    await withFiles(qcow2, 'current', async (files) => {
      expect((await files.list('/cf')).map((entry) => entry.name)).toEqual(['MixedCase.TXT', 'Ärger.txt']);
      expect(new TextDecoder().decode(await readAll(files, '/cf/mixedcase.txt'))).toBe('any case\n');
      expect(new TextDecoder().decode(await readAll(files, '/cf/ärger.TXT'))).toBe('any case\n');
      expect(new TextDecoder().decode(await readAll(files, '/plain/MixedCase.TXT'))).toBe('exact case only\n');
      await expect(files.stat('/plain/mixedcase.txt')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    });
  });
});

describe('an ext4 with meta_bg: group descriptors kept in each meta group, not after the superblock', () => {
  let qcow2: string;
  let fsImage: string;
  const FILES = 900;
  beforeAll(async () => {
    fsImage = folder.file('meta-bg.ext4');
    const tree: Record<string, string> = {};
    for (let index = 1; index <= FILES; index++) tree[`many/f${index}.txt`] = `file ${index}\n`;
    // 1 KiB blocks, 1024 blocks and 24 inodes a group, 32 descriptors a block: the last files' inodes
    // lie past group 32, whose descriptors are in meta group 1's own first group.
    await makeExtImage(fsImage, 48, tree, { mkfsArgs: ['-b', '1024', '-g', '1024', '-N', '1000', '-I', '128', '-O', 'meta_bg,^resize_inode,^64bit,^flex_bg'] });
    const stat = await debugfs(fsImage, [`stat /many/f${FILES}.txt`]);
    const inode = Number(/Inode: (\d+)/.exec(stat)?.[1]);
    expect(Math.floor((inode - 1) / 24)).toBeGreaterThanOrEqual(32);
    qcow2 = folder.file('meta-bg.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
  });

  it('lists every file and reads those whose inodes lie in the second meta group', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect((await files.list('/many')).length).toBe(FILES);
      for (const index of [1, 777, FILES]) {
        expect(new TextDecoder().decode(await readAll(files, `/many/f${index}.txt`))).toBe(`file ${index}\n`);
        const facts = await debugfsFacts(fsImage, `/many/f${index}.txt`);
        expect((await files.stat(`/many/f${index}.txt`)).mtimeMs).toBe(facts.mtimeMs);
      }
    });
  });
});

describe('an ext4 with bigalloc: block bitmaps count clusters of 16 blocks, so a group holds more blocks than a bitmap has bits', () => {
  it('lists and reads it (it was refused as damaged)', async () => {
    const fsImage = folder.file('bigalloc.ext4');
    await makeExtImage(fsImage, 64, { 'docs/a.txt': 'clustered\n', 'big.bin': pattern(300_000, 9) }, { mkfsArgs: ['-b', '1024', '-O', 'bigalloc', '-C', '16384'] });
    const facts = await runTool('dumpe2fs', ['-h', fsImage]);
    expect(Number(/Blocks per group:\s+(\d+)/.exec(facts.stdout)?.[1])).toBeGreaterThan(1024 * 8);
    const qcow2 = folder.file('bigalloc.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
    await withFiles(qcow2, 'current', async (files) => {
      expect((await files.list('/')).map((entry) => entry.name)).toEqual(expect.arrayContaining(['big.bin', 'docs']));
      expect(new TextDecoder().decode(await readAll(files, '/docs/a.txt'))).toBe('clustered\n');
      expect(await readAll(files, '/big.bin')).toEqual(pattern(300_000, 9));
    });
  });
});

describe('a disk with an MBR: primaries, an extended partition and logical ones', () => {
  let qcow2: string;
  beforeAll(async () => {
    const raw = folder.file('mbr.raw');
    await makePartitionedDisk(raw, 64, 'mbr', [
      { startMiB: 1, sizeMiB: 16, type: '83' },
      { startMiB: 17, sizeMiB: 4, type: '82' },
      { startMiB: 21, sizeMiB: 40, type: '5' },
      { startMiB: 22, sizeMiB: 16, type: '83' },
      { startMiB: 39, sizeMiB: 16, type: '83' },
    ]);
    const boot = folder.file('mbr-boot.ext2');
    await makeExtImage(boot, 16, { 'vmlinuz': pattern(200_000, 2) }, { type: 'ext2', label: 'boot' });
    const home = folder.file('mbr-home.ext4');
    await makeExtImage(home, 16, { 'user/notes.txt': 'logical partition\n' }, { label: 'home' });
    placeImage(raw, boot, 1 * MiB);
    placeImage(raw, home, 39 * MiB);
    qcow2 = folder.file('mbr.qcow2');
    await qcow2FromRaw(raw, qcow2);
  });

  it('lists the volumes as folders named by partition number, with their types, filesystems and labels', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect(files.volumes.map((volume) => [volume.name, volume.table, volume.partitionType, volume.offset, volume.length, volume.filesystem, volume.label])).toEqual([
        ['1', 'mbr', '0x83', 1 * MiB, 16 * MiB, 'ext', 'boot'],
        ['2', 'mbr', '0x82', 17 * MiB, 4 * MiB, null, undefined],
        ['5', 'mbr', '0x83', 22 * MiB, 16 * MiB, null, undefined],
        ['6', 'mbr', '0x83', 39 * MiB, 16 * MiB, 'ext', 'home'],
      ]);
      expect(await files.list('/')).toEqual(['1', '2', '5', '6'].map((name) => ({ name, path: `/${name}`, kind: 'directory', size: 0, mtimeMs: null })));
    });
  });

  it('reads each volume\'s files under its folder', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      expect(names(await files.list('/1'))).toEqual(['lost+found', 'vmlinuz']);
      expect(await files.stat('/1/vmlinuz')).toMatchObject({ name: 'vmlinuz', path: '/1/vmlinuz', size: 200_000 });
      expect(await readAll(files, '/1/vmlinuz')).toEqual(pattern(200_000, 2));
      expect(await files.list('/6/user')).toMatchObject([{ name: 'notes.txt', path: '/6/user/notes.txt', kind: 'file', size: 18 }]);
      expect(new TextDecoder().decode(await readAll(files, '/6/user/notes.txt'))).toBe('logical partition\n');
    });
  });

  it('says a volume holds no filesystem it reads, and a missing volume is not found', async () => {
    await withFiles(qcow2, 'current', async (files) => {
      await expect(files.list('/2')).rejects.toMatchObject({ code: 'NO_FILESYSTEM' });
      await expect(files.list('/3')).rejects.toMatchObject({ code: 'NOT_FOUND' });
      await expect(files.read('/1', new Uint8Array(1), 0)).rejects.toMatchObject({ code: 'IS_A_DIRECTORY' });
    });
  });

  it('finds an ext2 file\'s blocks through its block map, offset by the partition\'s start', async () => {
    const boot = folder.file('mbr-boot.ext2');
    const facts = await debugfsFacts(boot, '/vmlinuz');
    await withFiles(qcow2, 'current', async (files) => {
      const ranges = (await files.extents('/1/vmlinuz')) ?? [];
      const blockBytes = facts.blockBytes;
      const blocks = ranges.flatMap((range) => Array.from({ length: range.length / blockBytes }, (_, index) => (range.offset - MiB) / blockBytes + index));
      expect(blocks).toEqual(facts.blocks);
    });
  });
});

describe('a GPT disk', () => {
  let qcow2: string;
  beforeAll(async () => {
    const raw = folder.file('gpt.raw');
    await makePartitionedDisk(raw, 48, 'gpt', [
      { startMiB: 1, sizeMiB: 8, type: 'EF00' },
      { startMiB: 9, sizeMiB: 32, type: '8300' },
    ]);
    const root = folder.file('gpt-root.ext4');
    await makeExtImage(root, 32, { 'srv/data.bin': pattern(70_000, 3) }, { label: 'gptroot' });
    placeImage(raw, root, 9 * MiB);
    qcow2 = folder.file('gpt.qcow2');
    await qcow2FromRaw(raw, qcow2);
  });

  it('lists the partitions with the type GUIDs sgdisk wrote', async () => {
    const printed = await runTool('sgdisk', ['-i', '2', folder.file('gpt.raw')]);
    const guid = /Partition GUID code: ([0-9A-F-]+)/.exec(printed.stdout)?.[1];
    expect(guid).toBe('0FC63DAF-8483-4772-8E79-3D69D8477DE4');
    await withFiles(qcow2, 'current', async (files) => {
      expect(files.volumes.map((volume) => [volume.name, volume.table, volume.partitionType, volume.offset, volume.length, volume.filesystem, volume.label])).toEqual([
        ['1', 'gpt', 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B', 1 * MiB, 8 * MiB, null, undefined],
        ['2', 'gpt', guid, 9 * MiB, 32 * MiB, 'ext', 'gptroot'],
      ]);
      expect(await readAll(files, '/2/srv/data.bin')).toEqual(pattern(70_000, 3));
    });
  });
});

describe('snapshots: each state shows the files it had', () => {
  let qcow2: string;
  beforeAll(async () => {
    const fsImage = folder.file('snap.ext4');
    await makeExtImage(fsImage, 32, { 'etc/config': 'version=1\n', 'var/old.log': pattern(50_000, 4) });
    qcow2 = folder.file('snap.qcow2');
    await qcow2FromRaw(fsImage, qcow2);
    await qemuSnapshot(qcow2, 'installed');
    const updated = folder.file('updated.txt');
    fs.writeFileSync(updated, 'version=2, longer\n');
    const added = folder.file('added.bin');
    fs.writeFileSync(added, pattern(90_000, 5));
    await debugfs(fsImage, ['rm /etc/config', `write ${updated} /etc/config`, 'rm /var/old.log', `write ${added} /var/new.bin`, 'set_inode_field /etc/config mtime 202001010000']);
    await writeRawIntoQcow2(fsImage, qcow2);
  });

  it('the snapshot shows the files before the change, the current state after it', async () => {
    await withFiles(qcow2, 'installed', async (files) => {
      expect(names(await files.list('/var'))).toEqual(['old.log']);
      expect(new TextDecoder().decode(await readAll(files, '/etc/config'))).toBe('version=1\n');
      expect(await readAll(files, '/var/old.log')).toEqual(pattern(50_000, 4));
    });
    await withFiles(qcow2, 'current', async (files) => {
      expect(names(await files.list('/var'))).toEqual(['new.bin']);
      expect(await files.stat('/etc/config')).toMatchObject({ size: 18, mtimeMs: Date.UTC(2020, 0, 1) });
      expect(new TextDecoder().decode(await readAll(files, '/etc/config'))).toBe('version=2, longer\n');
      expect(await readAll(files, '/var/new.bin')).toEqual(pattern(90_000, 5));
    });
  });

  it('finds a snapshot by its id too, and refuses an unknown one', async () => {
    await withFiles(qcow2, '1', async (files) => {
      expect(names(await files.list('/var'))).toEqual(['old.log']);
    });
    await expect(openStateFiles(qcow2, 'nope')).rejects.toMatchObject({ code: 'SNAPSHOT_NOT_FOUND' });
  });

  it('opens from an already open guest reader (a raw file here)', async () => {
    const files = await stateFilesOf(openGuestReader(folder.file('snap.ext4')));
    try {
      expect(names(await files.list('/var'))).toEqual(['new.bin']);
    } finally {
      await files.close();
    }
  });
});

describe('an encrypted (LUKS) disk', () => {
  const passphrase = 'guest files secret';
  let qcow2: string;
  beforeAll(async () => {
    const fsImage = folder.file('luks.ext4');
    await makeExtImage(fsImage, 8, { 'secret/plans.txt': 'encrypted at rest\n', 'secret/data.bin': pattern(40_000, 6) });
    qcow2 = folder.file('luks.qcow2');
    await createLuksImage(qcow2, passphrase, { size: String(8 * MiB) });
    await runTool('qemu-io', [...secret('sec0', passphrase), '--image-opts', imageOpts(qcow2, 'sec0'), '-c', `write -s ${fsImage} 0 ${8 * MiB}`]);
  });

  it('reads the files after unlocking with the passphrase', async () => {
    await withFiles(
      qcow2,
      'current',
      async (files) => {
        expect(names(await files.list('/secret'))).toEqual(['data.bin', 'plans.txt']);
        expect(new TextDecoder().decode(await readAll(files, '/secret/plans.txt'))).toBe('encrypted at rest\n');
        expect(await readAll(files, '/secret/data.bin')).toEqual(pattern(40_000, 6));
      },
      passphrase,
    );
  });

  it('refuses without the passphrase (LOCKED) and with a wrong one', async () => {
    await expect(openStateFiles(qcow2, 'current')).rejects.toMatchObject({ code: 'LOCKED' });
    await expect(openStateFiles(qcow2, 'current', { passphrase: 'wrong' })).rejects.toMatchObject({ code: expect.stringMatching(/PASSPHRASE|LOCKED/) });
  });
});
