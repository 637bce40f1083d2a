/**
 * Hostile guest bytes give typed errors, never a crash, a loop or a poisoned reader: damaged ext
 * superblocks, extended-partition chains that loop or never end, GPTs with bad checksums or absurd
 * entry counts, partitions past the disk's end, and seeded random damage to an ext filesystem's
 * metadata. The disks start from what the real tools made (sfdisk, sgdisk, mke2fs).
 */
import * as fs from 'node:fs';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { copyOut } from '../../../src/shared/qcow2/files/copy-out.ts';
import { diffStateFiles } from '../../../src/shared/qcow2/files/files-diff.ts';
import { stateFilesOf } from '../../../src/shared/qcow2/files/state-files.ts';
import { debugfs, makeExtImage, makePartitionedDisk, MiB } from '../../helpers/guest-filesystems.ts';
import { runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { memoryReader, withFiles } from '../../helpers/memory-guest.ts';

vi.setConfig({ testTimeout: 120_000 });

let folder: TempDir;
let ext4: Uint8Array;
beforeAll(async () => {
  folder = tempDir();
  const image = folder.file('plain.ext4');
  // Without metadata checksums, damage reaches libext2fs's parsing instead of failing the checksum.
  await makeExtImage(image, 8, { 'a/b/c.txt': 'deep\n', 'a/big.bin': new Uint8Array(300_000).fill(7), 'top.txt': 'top\n' }, { mkfsArgs: ['-O', '^metadata_csum'] });
  ext4 = new Uint8Array(fs.readFileSync(image));
});
afterAll(() => folder.cleanup());


async function rawDisk(name: string, table: 'mbr' | 'gpt', partitions: Parameters<typeof makePartitionedDisk>[3], sizeMiB = 24): Promise<Uint8Array> {
  const file = folder.file(name);
  await makePartitionedDisk(file, sizeMiB, table, partitions);
  return new Uint8Array(fs.readFileSync(file));
}

/** XORs one byte with mask. */
function flip(bytes: Uint8Array, offset: number, mask: number): void {
  bytes.set([(bytes.at(offset) ?? 0) ^ mask], offset);
}

const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

describe('damaged ext superblocks', () => {
  it('a whole-disk filesystem with an impossible block size is a volume with a problem, its listing FILESYSTEM_CORRUPT', async () => {
    const bytes = ext4.slice();
    view(bytes).setUint32(1024 + 24, 40, true);
    await withFiles(bytes, async (files) => {
      expect(files.volumes).toMatchObject([{ name: '', filesystem: 'ext', problem: expect.stringContaining('block size') }]);
      await expect(files.list('/')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
    });
  });

  it('a partition whose superblock claims more blocks than it holds does not stop the others', async () => {
    const disk = await rawDisk('two.raw', 'mbr', [
      { startMiB: 1, sizeMiB: 8, type: '83' },
      { startMiB: 9, sizeMiB: 8, type: '83' },
    ]);
    disk.set(ext4, 1 * MiB);
    disk.set(ext4, 9 * MiB);
    view(disk).setUint32(1 * MiB + 1024 + 4, 0x7fffffff, true);
    await withFiles(disk, async (files) => {
      expect(files.volumes[0]).toMatchObject({ name: '1', filesystem: 'ext', problem: expect.stringContaining('do not fit') });
      await expect(files.list('/1')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      expect((await files.list('/2')).map((entry) => entry.name)).toEqual(['a', 'lost+found', 'top.txt']);
    });
  });

  it('an incompatible feature libext2fs does not read (dirdata) makes the volume unreadable, as its mount did', async () => {
    const bytes = ext4.slice();
    view(bytes).setUint32(1024 + 96, view(bytes).getUint32(1024 + 96, true) | 0x1000, true);
    await withFiles(bytes, async (files) => {
      expect(files.volumes).toMatchObject([{ name: '', filesystem: 'ext', problem: expect.stringContaining('incompatible features 0x1000') }]);
      await expect(files.list('/')).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED' });
    });
  });

  it('a superblock failing its metadata checksum is refused before anything else is read', async () => {
    const image = folder.file('csum.ext4');
    await makeExtImage(image, 8, { 'top.txt': 'top\n' });
    const bytes = new Uint8Array(fs.readFileSync(image));
    await withFiles(bytes, async (files) => expect((await files.list('/')).map((entry) => entry.name)).toContain('top.txt'));
    // The volume name: covered by the checksum, read by nobody else.
    flip(bytes, 1024 + 120, 0x20);
    await withFiles(bytes, async (files) => {
      expect(files.volumes).toMatchObject([{ filesystem: 'ext', problem: expect.stringContaining('checksum') }]);
      await expect(files.list('/')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
    });
  });

  it('inline data whose attribute runs past its inode, lies over the attribute entries, or claims more bytes than the inode holds, is FILESYSTEM_CORRUPT', async () => {
    const image = folder.file('inline-damaged.ext4');
    await makeExtImage(image, 8, { 'small/tiny.txt': 'fits in the inode\n', 'small/longer.txt': 'x'.repeat(100) }, { mkfsArgs: ['-O', 'inline_data,^metadata_csum', '-I', '256'] });
    const pristine = new Uint8Array(fs.readFileSync(image));
    const inodeOf = async (guestPath: string): Promise<number> => Number(/Inode: (\d+)/.exec(await debugfs(image, [`stat ${guestPath}`]))?.[1]);
    const longer = await inodeOf('/small/longer.txt');
    const layout = (await runTool('dumpe2fs', [image])).stdout;
    const tableBlock = Number(/Inode table at (\d+)/.exec(layout)?.[1]);
    const blockBytes = Number(/Block size:\s+(\d+)/.exec(layout)?.[1]);
    expect(longer).toBeLessThanOrEqual(Number(/Inodes per group:\s+(\d+)/.exec(layout)?.[1]));
    const inodeAt = tableBlock * blockBytes + (longer - 1) * 256;
    expect(view(pristine).getUint32(inodeAt + 4, true), 'the inode found').toBe(100);
    // The size past what i_block and the system.data value hold.
    const oversized = pristine.slice();
    view(oversized).setUint32(inodeAt + 4, 5000, true);
    // The system.data value's offset past the inode's end.
    const displaced = pristine.slice();
    const attributes = inodeAt + 128 + view(displaced).getUint16(inodeAt + 128, true) + 4;
    view(displaced).setUint16(attributes + 2, 4000, true);
    // The value's offset at the entry list itself (the kernel and e2fsck refuse it): the entry would read as file data.
    const overlapping = pristine.slice();
    view(overlapping).setUint16(attributes + 2, 0, true);
    for (const [name, bytes] of [['oversized', oversized], ['displaced', displaced], ['overlapping', overlapping]] as const) {
      await withFiles(bytes, async (files) => {
        await expect(files.read('/small/longer.txt', new Uint8Array(6000), 0), name).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
        const tiny = new Uint8Array(64);
        expect(new TextDecoder().decode(tiny.subarray(0, await files.read('/small/tiny.txt', tiny, 0))), name).toBe('fits in the inode\n');
      });
    }
  });

  it('a folder entry naming a deleted inode (no links) is listed by name only, marked damaged, as the kernel refuses it ("deleted inode referenced"); its siblings read', async () => {
    const image = folder.file('deleted-entry.ext4');
    await makeExtImage(image, 8, { 'etc/hostname': 'guest\n', 'etc/passwd': 'root:x:0:0\n', 'etc/motd': 'hello\n' });
    await debugfs(image, ['sif /etc/passwd links_count 0']);
    await withFiles(new Uint8Array(fs.readFileSync(image)), async (files) => {
      const entries = await files.list('/etc');
      expect(entries.map((entry) => [entry.name, entry.kind])).toEqual([['hostname', 'file'], ['motd', 'file'], ['passwd', 'other']]);
      expect(entries[2]).toMatchObject({ size: 0, mtimeMs: null, damaged: expect.stringMatching(/\/etc\/passwd names inode \d+, which is deleted/) });
      await expect(files.stat('/etc/passwd')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      expect((await files.stat('/etc/motd')).size).toBe(6);
    });
  });

  it.each([
    ['256-byte inodes (the 32-bit checksum)', ['-I', '256']],
    ['128-byte inodes (the low 16 bits only)', ['-I', '128']],
    ['metadata_csum_seed, the UUID changed after (the stored seed, not the UUID\'s)', ['-O', 'metadata_csum_seed']],
  ])('with %s: an inode failing its metadata checksum is listed by name only, damaged, as the kernel refuses it; its siblings read', async (_label, mkfsArgs) => {
    const image = folder.file(`inode-csum-${mkfsArgs.join('')}.ext4`);
    await makeExtImage(image, 8, { 'etc/hostname': 'guest\n', 'etc/passwd': 'root:x:0:0\n', 'etc/motd': 'hello\n' }, { mkfsArgs });
    if (mkfsArgs.includes('metadata_csum_seed')) expect((await runTool('tune2fs', ['-U', 'random', image])).code).toBe(0);
    // Where debugfs says the inode lies; one byte of its mtime changed, its checksum left as it was.
    const imap = await debugfs(image, ['imap /etc/passwd']);
    const place = /located at block (\d+), offset 0x([0-9a-f]+)/.exec(imap);
    const blockBytes = Number(/Block size:\s+(\d+)/.exec((await runTool('debugfs', ['-R', 'stats', image])).stdout)?.[1]);
    expect(place).not.toBeNull();
    const bytes = new Uint8Array(fs.readFileSync(image));
    await withFiles(bytes.slice(), async (files) => {
      expect((await files.list('/etc')).map((entry) => [entry.name, entry.kind])).toEqual([['hostname', 'file'], ['motd', 'file'], ['passwd', 'file']]);
    });
    flip(bytes, Number(place![1]) * blockBytes + Number.parseInt(place![2]!, 16) + 0x10, 0x01);
    await withFiles(bytes, async (files) => {
      const entries = await files.list('/etc');
      expect(entries.map((entry) => [entry.name, entry.kind])).toEqual([['hostname', 'file'], ['motd', 'file'], ['passwd', 'other']]);
      expect(entries[2]).toMatchObject({ damaged: expect.stringMatching(/inode \d+ fails its checksum/) });
      await expect(files.stat('/etc/passwd')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      expect((await files.stat('/etc/motd')).size).toBe(6);
    });
  });

  it('an extent tree block or a folder block failing its metadata checksum is FILESYSTEM_CORRUPT (a linear folder too, whose other blocks Linux still lists: the error says so); an htree folder\'s index blocks are not taken for damaged leaves', async () => {
    const source = folder.file('checksummed-blocks');
    fs.mkdirSync(`${source}/many`, { recursive: true });
    fs.mkdirSync(`${source}/huge`, { recursive: true });
    // Twelve 4 KiB pieces 64 KiB apart: more extents than the inode holds, so a tree block holds them.
    const sparse = fs.openSync(`${source}/sparse.bin`, 'w');
    for (let piece = 0; piece < 12; piece++) fs.writeSync(sparse, Buffer.alloc(4096, piece + 1), 0, 4096, piece * 65536);
    fs.closeSync(sparse);
    for (let index = 0; index < 300; index++) fs.writeFileSync(`${source}/many/file-with-a-longish-name-${String(index).padStart(4, '0')}.txt`, 'x');
    for (let index = 0; index < 4000; index++) fs.writeFileSync(`${source}/huge/${String(index).padStart(5, '0')}-a-name-long-enough-to-fill-blocks`, '');
    const image = folder.file('checksummed-blocks.ext4');
    expect((await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '1024', '-N', '8192', '-d', source, image, '24M'])).code).toBe(0);
    // e2fsck -D makes the big folders hashed (htree), with index blocks two levels deep for "huge".
    expect((await runTool('e2fsck', ['-fyD', image])).code).toBeLessThan(4);
    expect((await runTool('debugfs', ['-R', 'htree /huge', image])).stdout).toMatch(/Indirect levels: 1/);
    const leaf = Number(/^\s*0\/\s*1\s+1\/\s*1\s+\d+\s+-\s+\d+\s+(\d+)/m.exec((await runTool('debugfs', ['-R', 'ex /sparse.bin', image])).stdout)?.[1]);
    const linearImage = folder.file('linear-folder.ext4');
    expect((await runTool('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '1024', '-d', `${source}/many`, linearImage, '4M'])).code).toBe(0);
    // Its last block of names ("blocks" lists an extent tree block too, where there is one, before them).
    const lastFolderBlock = Number((await runTool('debugfs', ['-R', 'blocks /', linearImage])).stdout.trim().split(/\s+/).at(-1));
    const bytes = new Uint8Array(fs.readFileSync(image));
    await withFiles(bytes.slice(), async (files) => {
      expect((await files.list('/many')).length).toBe(300);
      expect((await files.list('/huge')).length).toBe(4000);
      const content = new Uint8Array(12 * 65536);
      await files.read('/sparse.bin', content, 0);
      expect(content[11 * 65536]).toBe(12);
    });
    // An unused entry of the tree block (after its 13th), inside what its checksum covers.
    flip(bytes, leaf * 1024 + 12 + 20 * 12, 0x01);
    await withFiles(bytes, async (files) => {
      await expect(files.read('/sparse.bin', new Uint8Array(4096), 0)).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringMatching(/extent tree block \d+ fails its checksum/) });
      expect((await files.list('/huge')).length).toBe(4000);
    });
    const linear = new Uint8Array(fs.readFileSync(linearImage));
    await withFiles(linear.slice(), async (files) => expect((await files.list('/')).length).toBe(301));
    // A byte of a name in the root folder's last block.
    flip(linear, lastFolderBlock * 1024 + 100, 0x01);
    await withFiles(linear, async (files) => {
      await expect(files.list('/')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringMatching(/the folder's block \d+ fails its checksum \(Linux lists the folder without the names that block holds\)/) });
    });
  });

  it('random damage to the metadata gives entries or typed errors, never anything else', async () => {
    const random = new SeededRandom(22);
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 40; round++) {
      const bytes = ext4.slice();
      // The superblock, group descriptors, bitmaps and inode tables of an 8 MiB filesystem.
      for (let count = 0; count < 20; count++) bytes[random.int(1024, 300 * 1024)] = random.int(0, 256);
      let outcome = 'ok';
      try {
        await withFiles(bytes, async (files) => {
          for (const path of ['/', '/a', '/a/b']) await files.list(path);
          const buffer = new Uint8Array(300_000);
          await files.read('/a/big.bin', buffer, 0);
          await files.extents('/a/big.bin');
        });
      } catch (error) {
        expect(error).toBeInstanceOf(Qcow2Error);
        outcome = (error as Qcow2Error).code;
      }
      expect(outcome).not.toBe('INTERNAL');
      outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    }
    expect([...outcomes.keys()].every((code) => ['ok', 'FILESYSTEM_CORRUPT', 'NOT_FOUND', 'NOT_A_DIRECTORY', 'IS_A_DIRECTORY', 'NOT_A_FILE'].includes(code))).toBe(true);
  });
});

describe('files the guest encrypted (ext4 encryption)', () => {
  it('a folder or file with the encrypted flag is FILESYSTEM_UNSUPPORTED, never its ciphertext as names or content; the rest reads', async () => {
    const image = folder.file('fscrypt.ext4');
    await makeExtImage(image, 8, { 'private/secret.txt': 'secret\n', 'sealed.bin': 'sealed\n', 'open.txt': 'open\n' }, { mkfsArgs: ['-O', 'encrypt'] });
    // mkfs cannot encrypt; the flag (EXT4_ENCRYPT_FL) is what tells a reader the bytes are ciphertext.
    for (const guestPath of ['/private', '/sealed.bin']) {
      const flags = /Flags: (0x[0-9a-f]+)/.exec(await debugfs(image, [`stat ${guestPath}`]))?.[1];
      expect(flags, `debugfs stat ${guestPath}`).toBeDefined();
      await debugfs(image, [`set_inode_field ${guestPath} flags 0x${(Number(flags) | 0x800).toString(16)}`]);
    }
    await withFiles(new Uint8Array(fs.readFileSync(image)), async (files) => {
      expect((await files.list('/')).map((entry) => entry.name)).toEqual(expect.arrayContaining(['open.txt', 'private', 'sealed.bin']));
      await expect(files.list('/private')).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED', message: expect.stringContaining('encrypted inside the guest') });
      await expect(files.stat('/private/secret.txt')).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED' });
      await expect(files.read('/sealed.bin', new Uint8Array(64), 0)).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED' });
      const open = new Uint8Array(64);
      expect(new TextDecoder().decode(open.subarray(0, await files.read('/open.txt', open, 0)))).toBe('open\n');
    });

    // A copy of the whole disk copies the rest and names each encrypted entry as skipped (it
    // stopped at the first, leaving nothing or half a folder).
    const target = folder.file('fscrypt-copy');
    await withFiles(new Uint8Array(fs.readFileSync(image)), async (files) => {
      const copied = await copyOut(files, '/', target, { overwrite: false });
      expect(copied.skipped.map((skipped) => skipped.path).sort()).toEqual(['/private', '/sealed.bin']);
      expect(copied.skipped.every((skipped) => skipped.reason.includes('encrypted inside the guest'))).toBe(true);
      expect(copied.files).toBeGreaterThanOrEqual(1);
    });
    expect(fs.readFileSync(`${target}/open.txt`, 'utf8')).toBe('open\n');
    expect(fs.existsSync(`${target}/sealed.bin`)).toBe(false);
    expect(fs.readdirSync(target).filter((name) => name.includes('sealed'))).toEqual([]);
    // Copied alone, an encrypted file is still refused.
    await withFiles(new Uint8Array(fs.readFileSync(image)), async (files) => {
      await expect(copyOut(files, '/sealed.bin', folder.file('sealed-alone'), { overwrite: false })).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED' });
    });

    // files-diff leaves out what it cannot read, says so, and compares the rest.
    const later = folder.file('fscrypt-later.ext4');
    fs.copyFileSync(image, later);
    const replacement = folder.file('open-later.txt');
    fs.writeFileSync(replacement, 'opened again\n');
    await debugfs(later, ['rm /open.txt', `write ${replacement} open.txt`, `write ${replacement} new.txt`]);
    const before = new Uint8Array(fs.readFileSync(image));
    const after = new Uint8Array(fs.readFileSync(later));
    await withFiles(before, (filesBefore) =>
      withFiles(after, async (filesAfter) => {
        const diff = await diffStateFiles(filesBefore, filesAfter, { from: 'before', to: 'after', changedRanges: [{ offset: 0, length: after.length }] });
        expect(diff.differences.map((difference) => [difference.path, difference.change])).toEqual([
          ['/new.txt', 'added'],
          ['/open.txt', 'changed'],
        ]);
        expect(diff.skipped.map((skipped) => [skipped.volume, skipped.path])).toEqual([
          ['/', '/private'],
          ['/', '/sealed.bin'],
        ]);
        expect(diff.skipped.every((skipped) => skipped.reason.includes('encrypted inside the guest'))).toBe(true);
      }),
    );
  });
});

describe('hostile MBRs', () => {
  let disk: Uint8Array;
  const extendedSector = 5 * 2048;
  beforeAll(async () => {
    disk = await rawDisk('extended.raw', 'mbr', [
      { startMiB: 1, sizeMiB: 4, type: '83' },
      { startMiB: 5, sizeMiB: 16, type: '5' },
      { startMiB: 6, sizeMiB: 4, type: '83' },
      { startMiB: 11, sizeMiB: 4, type: '83' },
    ]);
  });

  it('sfdisk\'s chain reads as logical partitions 5 and 6', async () => {
    await withFiles(disk, async (files) => {
      expect(files.volumes.map((volume) => [volume.name, volume.offset, volume.length])).toEqual([
        ['1', 1 * MiB, 4 * MiB],
        ['5', 6 * MiB, 4 * MiB],
        ['6', 11 * MiB, 4 * MiB],
      ]);
    });
  });

  it('an extended boot record that points back into the chain ends it, not followed forever: what came before is kept (as partx keeps it)', async () => {
    const bytes = disk.slice();
    const firstRecord = extendedSector * 512;
    // The first record's "next" entry: the first record itself (start 0 relative to the extended partition).
    const next = firstRecord + 446 + 16;
    bytes[next + 4] = 0x05;
    view(bytes).setUint32(next + 8, 0, true);
    view(bytes).setUint32(next + 12, 2048, true);
    await withFiles(bytes, async (files) => {
      expect(files.volumes.map((volume) => volume.name)).toEqual(['1', '5']);
    });
  });

  it('a chain of more logical partitions than any disk has is refused', async () => {
    const bytes = disk.slice();
    for (let index = 0; index < 300; index++) {
      const record = (extendedSector + index) * 512;
      bytes.fill(0, record, record + 512);
      bytes[record + 510] = 0x55;
      bytes[record + 511] = 0xaa;
      bytes[record + 446 + 4] = 0x83;
      view(bytes).setUint32(record + 446 + 8, 1000, true);
      view(bytes).setUint32(record + 446 + 12, 1, true);
      bytes[record + 462 + 4] = 0x05;
      view(bytes).setUint32(record + 462 + 8, index + 1, true);
      view(bytes).setUint32(record + 462 + 12, 1, true);
    }
    await expect(stateFilesOf(memoryReader(bytes))).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringContaining('more than 128') });
  });

  it('a partition that starts past the end of the disk is a volume with a problem; the others still read (one that only ends past it is cut there: partition-table-damage.test.ts)', async () => {
    const bytes = disk.slice();
    view(bytes).setUint32(446 + 8, 0xfffffff0, true);
    bytes.set(ext4.subarray(0, 4 * MiB), 6 * MiB);
    await withFiles(bytes, async (files) => {
      expect(files.volumes[0]).toMatchObject({ name: '1', problem: expect.stringContaining('past the end') });
      await expect(files.list('/1')).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT' });
      expect(files.volumes.map((volume) => volume.name)).toEqual(['1', '5', '6']);
    });
  });
});

describe('hostile GPTs', () => {
  let disk: Uint8Array;
  beforeAll(async () => {
    disk = await rawDisk('gpt.raw', 'gpt', [{ startMiB: 1, sizeMiB: 8, type: '8300' }]);
    disk.set(ext4, 1 * MiB);
  });

  const backupHeader = (bytes: Uint8Array): number => bytes.length - 512;

  /** Sets the header's entry count and fixes its own checksum, so only the count is wrong. */
  function setEntryCount(bytes: Uint8Array, headerOffset: number, count: number): void {
    const header = view(bytes);
    header.setUint32(headerOffset + 80, count, true);
    const size = header.getUint32(headerOffset + 12, true);
    header.setUint32(headerOffset + 16, 0, true);
    header.setUint32(headerOffset + 16, crc32(bytes.subarray(headerOffset, headerOffset + size)), true);
  }

  it('sgdisk\'s table reads, and a damaged primary header falls back to the backup', async () => {
    await withFiles(disk, async (files) => {
      expect(files.volumes).toMatchObject([{ name: '1', table: 'gpt', offset: 1 * MiB, filesystem: 'ext' }]);
    });
    const bytes = disk.slice();
    flip(bytes, 512 + 20, 0xff);
    await withFiles(bytes, async (files) => {
      expect((await files.list('/1/a')).map((entry) => entry.name)).toEqual(['b', 'big.bin']);
    });
  });

  it('both headers failing their checksums is FILESYSTEM_CORRUPT', async () => {
    const bytes = disk.slice();
    flip(bytes, 512 + 20, 0xff);
    flip(bytes, backupHeader(bytes) + 20, 0xff);
    await expect(stateFilesOf(memoryReader(bytes))).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringContaining('checksum') });
  });

  it('entries that fail their checksum in both tables are FILESYSTEM_CORRUPT (one damaged table: the other is read)', async () => {
    const bytes = disk.slice();
    flip(bytes, 1024 + 40, 0x01);
    // The backup header's entry array (its LBA at byte 72 of the header).
    flip(bytes, Number(view(bytes).getBigUint64(backupHeader(bytes) + 72, true)) * 512 + 40, 0x01);
    await expect(stateFilesOf(memoryReader(bytes))).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringContaining('entries') });
  });

  it('a huge entry count (with valid header checksums) is refused before anything is allocated', async () => {
    const bytes = disk.slice();
    setEntryCount(bytes, 512, 0x7fffffff);
    setEntryCount(bytes, backupHeader(bytes), 0x7fffffff);
    await expect(stateFilesOf(memoryReader(bytes))).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringContaining('entries of 128 bytes') });
  });
});

