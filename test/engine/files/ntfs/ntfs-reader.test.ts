/**
 * The NTFS reader against the ntfs-3g utilities on the same image: listings (names, kinds, sizes,
 * times), file bytes, the label, links, and the features it refuses. The volume was made by mkntfs
 * and ntfs-3g (fixtures/make-ntfs-fixture.sh); a second one is made here by mkntfs and ntfscp.
 */
import * as fs from 'node:fs';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../../src/shared/qcow2/errors.ts';
import type { GuestFilesystem } from '../../../../src/shared/qcow2/files/filesystem.ts';
import { FILESYSTEM_READERS } from '../../../../src/shared/qcow2/files/filesystems.ts';
import { NtfsFilesystem } from '../../../../src/shared/qcow2/files/ntfs/ntfs-filesystem.ts';
import { NTFS_READER } from '../../../../src/shared/qcow2/files/ntfs/ntfs-reader.ts';
import { openGuestReader } from '../../../../src/shared/qcow2/image/image-format.ts';
import { decodeUtf16 } from '../../../../src/shared/qcow2/files/ntfs/bytes.ts';
import { mkntfs, ntfscat, ntfscp, ntfsinfoFile, ntfsinfoModifiedSeconds, ntfsls, ntfsVolumeName } from '../../../helpers/ntfs-tools.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { openRawVolume, type RawVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { readWhole, unpackNtfsFixture } from './ntfs-fixture.ts';

let folder: TempDir;
let image: string;
let volume: RawVolumeBytes;
let ntfs: GuestFilesystem;

beforeAll(async () => {
  folder = tempDir();
  image = unpackNtfsFixture(folder.file('ntfs.img'));
  volume = openRawVolume(image);
  ntfs = await NTFS_READER.open(volume);
});

afterAll(async () => {
  await ntfs.close();
  volume.close();
  folder.cleanup();
});

async function expectCode(action: Promise<unknown>, code: string): Promise<void> {
  const error = await action.then(
    () => null,
    (thrown: unknown) => thrown,
  );
  expect(error).toBeInstanceOf(Qcow2Error);
  expect((error as Qcow2Error).code).toBe(code);
}

/** Every folder below `start`, depth first, as the reader lists them. */
async function folders(filesystem: GuestFilesystem, start: string): Promise<string[]> {
  const found = [start];
  for (const entry of await filesystem.list(start)) {
    if (entry.kind === 'directory') found.push(...(await folders(filesystem, entry.path)));
  }
  return found;
}

describe('NTFS reader on a volume made by mkntfs and ntfs-3g', { timeout: 120_000 }, () => {
  it('is found by its signature in the registry and has the label ntfsinfo reports', async () => {
    expect(FILESYSTEM_READERS.filter((reader) => reader.kind === 'ntfs')).toEqual([NTFS_READER]);
    // Only NTFS claims the volume, whatever the probing order.
    const claiming = [];
    for (const reader of FILESYSTEM_READERS) if (await reader.probe(volume)) claiming.push(reader.kind);
    expect(claiming).toEqual(['ntfs']);
    const zeros = { length: 1 << 20, read: async (buffer: Uint8Array) => void buffer.fill(0) };
    expect(await NTFS_READER.probe(zeros)).toBe(false);
    expect(ntfs.kind).toBe('ntfs');
    expect(ntfs.label).toBe(await ntfsVolumeName(image));
  });

  it('lists every folder as ntfsls does: names, kinds and sizes', async () => {
    const all = await folders(ntfs, '/');
    expect(all.length).toBeGreaterThanOrEqual(8);
    for (const path of all) {
      // ntfsls prints the index root's names before the blocks'; the reader lists in name order.
      const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
      const ours = (await ntfs.list(path)).sort(byName);
      const theirs = (await ntfsls(image, path)).sort(byName);
      expect(ours.map((entry) => entry.name), path).toEqual(theirs.map((entry) => entry.name));
      ours.forEach((entry, index) => {
        const reference = theirs[index]!;
        expect(entry.path).toBe(path === '/' ? `/${entry.name}` : `${path}/${entry.name}`);
        if (entry.kind === 'symlink' || entry.kind === 'other') return;
        expect(entry.kind === 'directory', entry.path).toBe(reference.isDirectory);
        expect(entry.size, entry.path).toBe(entry.kind === 'directory' ? 0 : reference.size);
      });
    }
    expect((await ntfs.list('/many')).length).toBe(400);
  });

  it('gives each modification time to the second as ntfsinfo reads $STANDARD_INFORMATION, with its sub-second part', async () => {
    // ntfsls prints the times cached in the folder's index; ntfsinfo the file's own, which Windows keeps current.
    let compared = 0;
    for (const path of await folders(ntfs, '/')) {
      const entries = await ntfs.list(path);
      // ntfscat reads a System Compressed file's unnamed $DATA (zeros): those have their own test below.
      if (path === '/wof') continue;
      for (const entry of path === '/many' ? entries.slice(0, 5) : entries) {
        expect(Math.floor(entry.mtimeMs! / 1000), entry.path).toBe(await ntfsinfoModifiedSeconds(image, entry.path));
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(40);
    // make-ntfs-fixture.sh touched these with fractions of a second: FILETIME keeps 100 ns.
    expect((await ntfs.stat('/Documents/report.txt')).mtimeMs! % 1000).toBe(123);
    expect((await ntfs.stat('/Documents/Sub Folder/deep/file.bin')).mtimeMs! % 1000).toBe(900);
  });

  it('reads every regular file byte for byte as ntfscat does (resident, non-resident, fragmented, sparse, compressed, many names)', async () => {
    let files = 0;
    for (const path of await folders(ntfs, '/')) {
      const entries = (await ntfs.list(path)).filter((entry) => entry.kind === 'file');
      // ntfscat reads a System Compressed file's unnamed $DATA (zeros): those have their own test below.
      if (path === '/wof') continue;
      for (const entry of path === '/many' ? entries.slice(0, 5) : entries) {
        const content = await readWhole(ntfs, entry.path, entry.size);
        expect(content.equals(await ntfscat(image, entry.path)), entry.path).toBe(true);
        files++;
      }
    }
    expect(files).toBeGreaterThan(25);
  });

  it('reads from any offset, zeros from holes, and nothing past the end', async () => {
    const whole = await ntfscat(image, '/sparse.vhd');
    for (const [offset, length] of [[(1 << 20) - 10, 100], [0, 4096], [20 * (1 << 20) - 3, 10], [12_345, 1 << 20]] as const) {
      const buffer = Buffer.alloc(length, 0xee);
      const count = await ntfs.read('/sparse.vhd', buffer, offset);
      expect(count).toBe(Math.min(length, whole.length - offset));
      expect(buffer.subarray(0, count).equals(whole.subarray(offset, offset + count))).toBe(true);
    }
    expect(await ntfs.read('/sparse.vhd', Buffer.alloc(8), whole.length + 100)).toBe(0);
  });

  it('gives the data runs of a file as volume byte ranges, sparse runs left out, null for resident data', async () => {
    const stat = await ntfs.stat('/fragmented.bin');
    const extents = (await ntfs.extents!('/fragmented.bin'))!;
    expect(extents.length).toBeGreaterThan(1);
    const gathered = Buffer.concat(
      await Promise.all(
        extents.map(async ({ offset, length }) => {
          const bytes = Buffer.alloc(length);
          await volume.read(bytes, offset);
          return bytes;
        }),
      ),
    );
    expect(gathered.subarray(0, stat.size).equals(await ntfscat(image, '/fragmented.bin'))).toBe(true);
    const sparse = (await ntfs.extents!('/sparse.vhd'))!;
    const sparseBytes = sparse.reduce((sum, range) => sum + range.length, 0);
    expect(sparseBytes).toBeGreaterThan(0);
    expect(sparseBytes).toBeLessThan((await ntfs.stat('/sparse.vhd')).size / 10);
    expect(await ntfs.extents!('/Documents/report.txt')).toBeNull();
    expect(await ntfs.extents!('/Documents')).toBeNull();
  });

  it('tells where a sparse file may hold data (file offsets): reading only there, zeros elsewhere, gives ntfscat\'s bytes (a copy skips the holes)', async () => {
    const whole = await ntfscat(image, '/sparse.vhd');
    const ranges = (await ntfs.dataRanges!('/sparse.vhd'))!;
    expect(ranges.reduce((sum, range) => sum + range.length, 0)).toBeLessThan(whole.length / 10);
    const rebuilt = Buffer.alloc(whole.length);
    for (const { offset, length } of ranges) {
      const count = await ntfs.read('/sparse.vhd', rebuilt.subarray(offset, Math.min(whole.length, offset + length)), offset);
      expect(count).toBeGreaterThan(0);
    }
    expect(rebuilt.equals(whole)).toBe(true);
    // Resident content and folders: not told.
    expect(await ntfs.dataRanges!('/Documents/report.txt')).toBeNull();
    expect(await ntfs.dataRanges!('/Documents')).toBeNull();
  });

  it('finds paths whatever their case, and by a DOS 8.3 alias under the long name, which listings leave out', async () => {
    expect((await ntfs.stat('/documents/SUB FOLDER/Deep/FILE.BIN')).path).toBe('/Documents/Sub Folder/deep/file.bin');
    expect((await ntfs.stat('/ünïcødé 日本語 🐄.TXT')).name).toBe('Ünïcødé 日本語 🐄.txt');
    expect(await ntfsinfoFile(image, '/LongFileNameForDos.txt')).toMatch(/Namespace:\s+DOS[\s\S]*Filename:\s+'LONGFI~1\.TXT'/);
    const alias = await ntfs.stat('/longfi~1.txt');
    expect(alias.path).toBe('/LongFileNameForDos.txt');
    expect((await ntfs.list('/')).map((entry) => entry.name)).not.toContain('LONGFI~1.TXT');
  });

  it('leaves the metafiles out of the root listing (ntfsls shows them only with -s) but still resolves them', async () => {
    const withSystem = await ntfsls(image, '/', { system: true });
    const metafiles = withSystem.filter((entry) => entry.name.startsWith('$'));
    expect(metafiles.map((entry) => entry.name)).toEqual(expect.arrayContaining(['$MFT', '$LogFile', '$Bitmap', '$UpCase', '$Volume']));
    const listed = (await ntfs.list('/')).map((entry) => entry.name);
    for (const metafile of metafiles) expect(listed).not.toContain(metafile.name);
    const mft = metafiles.find((entry) => entry.name === '$MFT')!;
    expect((await ntfs.stat('/$MFT')).size).toBe(mft.size);
  });

  it('shows Interix symlinks, Windows symlinks and junctions as symlinks with their targets', async () => {
    const interixBytes = await ntfscat(image, '/interix-link');
    expect(interixBytes.subarray(0, 8).toString('latin1')).toBe('IntxLNK\u0001');
    const interix = await ntfs.stat('/interix-link');
    expect(interix).toMatchObject({ kind: 'symlink', target: decodeUtf16(interixBytes.subarray(8)) });
    expect(interix.size).toBe(Buffer.byteLength(interix.target!));

    expect(await ntfsinfoFile(image, '/reparse/windows-link')).toMatch(/Reparse tag:\s+0xa000000c/);
    // The targets make-ntfs-fixture.sh wrote as reparse data.
    expect(await ntfs.stat('/reparse/windows-link')).toMatchObject({ kind: 'symlink', target: '..\\Documents\\report.txt' });
    expect(await ntfsinfoFile(image, '/reparse/junction')).toMatch(/Reparse tag:\s+0xa0000003/);
    expect(await ntfs.stat('/reparse/junction')).toMatchObject({ kind: 'symlink', target: 'C:\\Users\\Public' });
    await expectCode(ntfs.read('/interix-link', Buffer.alloc(4), 0), 'NOT_A_FILE');
    await expectCode(ntfs.list('/reparse/junction/x'), 'NOT_A_DIRECTORY');
    expect(await ntfs.extents!('/reparse/windows-link')).toBeNull();
  });

  it('reads LZNT1-compressed files as ntfscat does: compressed units, units stored plain, holes, a resident value', async () => {
    const entries = await ntfs.list('/compressed');
    expect(entries.map((entry) => entry.name).sort()).toEqual(['holes.bin', 'mixed.bin', 'squeezed.txt', 'tiny.txt']);
    for (const entry of entries) {
      expect(await ntfsinfoFile(image, entry.path), entry.path).toMatch(/\$DATA[\s\S]*Attribute flags:\s+0x0001/);
      const reference = await ntfscat(image, entry.path);
      expect(entry.size).toBe(reference.length);
      expect((await readWhole(ntfs, entry.path, entry.size, 10_007)).equals(reference), entry.path).toBe(true);
      const middle = Math.floor(entry.size / 3);
      const piece = Buffer.alloc(70_000);
      const count = await ntfs.read(entry.path, piece, middle);
      expect(piece.subarray(0, count).equals(reference.subarray(middle, middle + 70_000)), entry.path).toBe(true);
    }
  });

  it('reads files Windows keeps System Compressed (WOF: XPRESS in 4, 8 and 16 KiB chunks, LZX in 32 KiB, made by wimlib) as their plain copies; names a WIMBoot one it cannot read', async () => {
    const plain = { original: await ntfscat(image, '/wof/original.bin'), x86: await ntfscat(image, '/wof/x86.bin') };
    for (const [name, original] of [['xpress4k.bin', plain.original], ['xpress8k.bin', plain.original], ['xpress16k.bin', plain.original], ['lzx.bin', plain.original], ['lzx-x86.bin', plain.x86]] as const) {
      const path = `/wof/${name}`;
      const info = await ntfsinfoFile(image, path);
      expect(info, path).toMatch(/Reparse tag:\s+0x80000017/);
      expect(info, path).toMatch(/Attribute name:\s+'WofCompressedData'/);
      // What a reader without WOF sees: the unnamed $DATA, zeros.
      expect((await ntfscat(image, path)).equals(Buffer.alloc(original.length)), path).toBe(true);
      expect(await ntfs.stat(path)).toMatchObject({ kind: 'file', size: original.length });
      expect((await readWhole(ntfs, path, original.length, 10_007)).equals(original), path).toBe(true);
      const middle = Math.floor(original.length / 3) + 1;
      const piece = Buffer.alloc(70_000);
      const count = await ntfs.read(path, piece, middle);
      expect(count).toBe(70_000);
      expect(piece.equals(original.subarray(middle, middle + 70_000)), path).toBe(true);
      expect(await ntfs.read(path, Buffer.alloc(8), original.length)).toBe(0);
      // A copy reads the whole file (no holes to skip); a diff looks at the compressed stream's clusters.
      expect(await ntfs.dataRanges!(path)).toBeNull();
      expect((await ntfs.extents!(path))?.length).toBeGreaterThan(0);
    }
    await expect(ntfs.read('/wof/wimboot.bin', Buffer.alloc(16), 0)).rejects.toMatchObject({ code: 'FILESYSTEM_UNSUPPORTED', message: expect.stringMatching(/WIMBoot/) });
    expect(await ntfs.stat('/wof/wimboot.bin')).toMatchObject({ kind: 'file', size: plain.original.length });
  });

  it('lists an encrypted (EFS) file but refuses to read it as FILESYSTEM_UNSUPPORTED', async () => {
    // No tool here makes EFS files: the $DATA attribute of a copy is flagged encrypted, as Windows flags it.
    const copy = folder.file('encrypted.img');
    fs.copyFileSync(image, copy);
    const bytes = fs.readFileSync(copy);
    const target = '/Documents/Sub Folder/deep/file.bin';
    const content = await ntfscat(image, target);
    const name = Buffer.from('file.bin', 'utf16le');
    let patched = 0;
    for (let record = 0; record < bytes.length; record += 1024) {
      const isFile = bytes.toString('latin1', record, record + 4) === 'FILE' && (bytes.readUInt16LE(record + 0x16) & 2) === 0;
      if (!isFile || !bytes.subarray(record, record + 1024).includes(name)) continue;
      for (let position = record + bytes.readUInt16LE(record + 0x14); bytes.readUInt32LE(position) !== 0xffffffff; position += bytes.readUInt32LE(position + 4)) {
        if (bytes.readUInt32LE(position) === 0x80) {
          bytes.writeUInt16LE(bytes.readUInt16LE(position + 0x0c) | 0x4000, position + 0x0c);
          patched++;
        }
      }
    }
    fs.writeFileSync(copy, bytes);
    expect(patched).toBe(1);
    const encryptedVolume = openRawVolume(copy);
    try {
      const filesystem = await NTFS_READER.open(encryptedVolume);
      expect(await filesystem.list('/Documents/Sub Folder/deep')).toMatchObject([{ name: 'file.bin', kind: 'file', size: content.length }]);
      await expectCode(filesystem.read(target, Buffer.alloc(16), 0), 'FILESYSTEM_UNSUPPORTED');
      expect((await readWhole(ntfs, target, content.length)).equals(content)).toBe(true);
    } finally {
      encryptedVolume.close();
    }
  });

  it('answers wrong paths with typed errors', async () => {
    await expectCode(ntfs.stat('/Documents/missing.txt'), 'NOT_FOUND');
    await expectCode(ntfs.list('/Documents/report.txt'), 'NOT_A_DIRECTORY');
    await expectCode(ntfs.stat('/Documents/report.txt/inside'), 'NOT_A_DIRECTORY');
    await expectCode(ntfs.read('/Documents', Buffer.alloc(4), 0), 'IS_A_DIRECTORY');
    await expectCode(ntfs.stat('/Documents/../empty.txt'), 'INVALID_ARGUMENT');
  });

  it('reads the same through a qcow2 image made by qemu-img convert, opened by openGuestReader', async () => {
    const qcow2 = folder.file('ntfs.qcow2');
    await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', image, qcow2]);
    const guest = openGuestReader(qcow2, 'qcow2');
    try {
      const bytes = {
        length: guest.virtualSize,
        read: async (buffer: Uint8Array, offset: number) => guest.readInto(buffer, offset),
      };
      const throughQcow2 = await NTFS_READER.open(bytes);
      expect(throughQcow2.label).toBe(ntfs.label);
      for (const path of ['/', '/Documents', '/many', '/links']) expect(await throughQcow2.list(path)).toEqual(await ntfs.list(path));
      for (const path of ['/fragmented.bin', '/sparse.vhd', '/Documents/Sub Folder/deep/file.bin']) {
        const { size } = await throughQcow2.stat(path);
        expect((await readWhole(throughQcow2, path, size)).equals(await ntfscat(image, path)), path).toBe(true);
      }
      await throughQcow2.close();
    } finally {
      guest.close();
    }
  });
});

// Clusters smaller than, equal to and larger than the 4 KiB index blocks (then their VCNs count 512-byte units).
describe.each([512, 4096, 65536])('NTFS reader on a volume made in the test by mkntfs -c %i and ntfscp', { timeout: 120_000 }, (clusterSize) => {
  it('lists and reads what ntfscp copied in, as ntfsls and ntfscat report it', async () => {
    const dir = tempDir();
    try {
      const fresh = dir.file('fresh.img');
      fs.writeFileSync(fresh, Buffer.alloc(0));
      fs.truncateSync(fresh, 24 * 1024 * 1024);
      await mkntfs(fresh, 'Fresh Label', clusterSize);
      const sources: Record<string, Buffer> = { 'random.bin': randomBytes(300_001), 'small.txt': Buffer.from('tiny resident file\n'), 'Mixed Case Name.dat': randomBytes(5000) };
      // Enough names that the root index needs INDX blocks.
      for (let index = 0; index < 60; index++) sources[`a-file-with-a-rather-long-name-${String(index).padStart(3, '0')}.txt`] = Buffer.from(`file ${index}\n`);
      for (const [name, content] of Object.entries(sources)) {
        fs.writeFileSync(dir.file(name), content);
        await ntfscp(fresh, dir.file(name), `/${name}`);
      }
      const freshVolume = openRawVolume(fresh);
      try {
        const filesystem = await NtfsFilesystem.open(freshVolume);
        expect(filesystem.label).toBe('Fresh Label');
        const listed = await filesystem.list('/');
        const reference = await ntfsls(fresh, '/');
        const pairs = (entries: { name: string; size: number }[]): [string, number][] => entries.map((entry): [string, number] => [entry.name, entry.size]).sort();
        expect(pairs(listed)).toEqual(pairs(reference));
        expect(listed.map((entry) => entry.name).sort()).toEqual(Object.keys(sources).sort());
        for (const [name, content] of Object.entries(sources)) {
          const read = await readWhole(filesystem, `/${name}`, content.length, 4093);
          expect(read.equals(content), name).toBe(true);
        }
        expect((await readWhole(filesystem, '/random.bin', sources['random.bin']!.length)).equals(await ntfscat(fresh, '/random.bin'))).toBe(true);
      } finally {
        freshVolume.close();
      }
    } finally {
      dir.cleanup();
    }
  });
});
