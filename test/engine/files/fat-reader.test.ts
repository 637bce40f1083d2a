/**
 * The FAT reader against volumes made by mkfs.fat and mtools: the listing is what mtools lists,
 * sizes, mtimes and bytes are what was put there, lookups ignore case as FAT does, and a file's
 * extents hold its bytes. One volume also goes through qemu-img into qcow2 and is read through
 * the engine's guest reader.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FILESYSTEM_READERS } from '../../../src/shared/qcow2/files/filesystems.ts';
import type { GuestFilesystem, VolumeBytes } from '../../../src/shared/qcow2/files/filesystem.ts';
import { FAT_READER } from '../../../src/shared/qcow2/files/fat/fat-reader.ts';
import { openGuestReader } from '../../../src/shared/qcow2/image/image-format.ts';
import type { GuestFileEntry } from '../../../src/shared/qcow2/model.ts';
import * as fs from 'node:fs';
import { qemuImg, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { buildFatScenario, bytesVolume, fatTool, fileVolume, guestVolume, mtoolsPaths, type FatScenario } from './fat-fixtures.ts';

let folder: TempDir;
const scenarios = new Map<number, FatScenario>();
beforeAll(async () => {
  folder = tempDir();
  for (const width of [12, 16, 32] as const) scenarios.set(width, await buildFatScenario(folder.path, width));
}, 120_000);
afterAll(() => folder.cleanup());

function scenario(width: number): FatScenario {
  const found = scenarios.get(width);
  if (found === undefined) throw new Error(`no FAT${width} scenario`);
  return found;
}

async function withVolume<T>(image: string, use: (filesystem: GuestFilesystem, volume: VolumeBytes) => Promise<T>): Promise<T> {
  const volume = fileVolume(image);
  try {
    const filesystem = await FAT_READER.open(volume);
    try {
      return await use(filesystem, volume);
    } finally {
      await filesystem.close();
    }
  } finally {
    volume.close();
  }
}

/** Every entry under a folder, depth first. */
async function walk(filesystem: GuestFilesystem, path = '/'): Promise<GuestFileEntry[]> {
  const found: GuestFileEntry[] = [];
  for (const entry of await filesystem.list(path)) {
    found.push(entry);
    if (entry.kind === 'directory') found.push(...(await walk(filesystem, entry.path)));
  }
  return found;
}

async function readAll(filesystem: GuestFilesystem, path: string, chunk = 7000): Promise<Uint8Array> {
  const { size } = await filesystem.stat(path);
  const bytes = new Uint8Array(size);
  for (let offset = 0; offset < size; ) {
    const count = await filesystem.read(path, bytes.subarray(offset, offset + chunk), offset);
    expect(count).toBeGreaterThan(0);
    offset += count;
  }
  expect(await filesystem.read(path, new Uint8Array(10), size)).toBe(0);
  return bytes;
}

async function errorCode(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'no error';
  } catch (error) {
    return (error as { code?: string }).code ?? String(error);
  }
}

describe.each([12, 16, 32])('FAT%i made by mkfs.fat and mtools', (width) => {
  it('is found by the registry and lists every path mtools lists, with the stored long names', async () => {
    const { image, label } = scenario(width);
    const volume = fileVolume(image);
    try {
      expect(await FAT_READER.probe(volume)).toBe(true);
      expect(FILESYSTEM_READERS).toContain(FAT_READER);
    } finally {
      volume.close();
    }
    await withVolume(image, async (filesystem) => {
      expect(filesystem.kind).toBe('fat');
      expect(filesystem.label).toBe(label);
      const paths = (await walk(filesystem)).map((entry) => entry.path).sort();
      expect(paths).toEqual(await mtoolsPaths(image));
    });
  });

  it('gives each file the size, mtime and bytes put there, and each folder its kind', async () => {
    const { image, files, folders } = scenario(width);
    await withVolume(image, async (filesystem) => {
      for (const file of files) {
        const entry = await filesystem.stat(file.path);
        expect({ path: entry.path, kind: entry.kind, size: entry.size, mtimeMs: entry.mtimeMs }).toEqual({ path: file.path, kind: 'file', size: file.bytes.length, mtimeMs: file.mtimeMs });
        expect(Buffer.from(await readAll(filesystem, file.path)).equals(Buffer.from(file.bytes))).toBe(true);
      }
      for (const path of folders) expect((await filesystem.stat(path)).kind).toBe('directory');
      expect(await filesystem.stat('/')).toMatchObject({ path: '/', kind: 'directory' });
    });
  });

  it('shows 8.3 names with the case bits mtools stored, and long names as written', async () => {
    await withVolume(scenario(width).image, async (filesystem) => {
      const names = (await filesystem.list('/')).map((entry) => entry.name);
      expect(names).toEqual(expect.arrayContaining(['hello.txt', 'lower.txt', 'MixedCase.Txt', 'Some Folder', 'EFI']));
      expect((await filesystem.list('/EFI/BOOT')).map((entry) => entry.name)).toEqual(['BOOTX64.EFI']);
      expect((await filesystem.list('/Some Folder')).map((entry) => entry.name)).toEqual(['Deeper', 'Ein langer Name äöü – ✓.txt']);
    });
  });

  it('finds a path whatever its case, and by its 8.3 alias, as FAT does; listings keep the stored names', async () => {
    await withVolume(scenario(width).image, async (filesystem) => {
      const entry = await filesystem.stat('/some folder/EIN LANGER NAME ÄÖÜ – ✓.TXT');
      expect(entry.path).toBe('/Some Folder/Ein langer Name äöü – ✓.txt');
      expect((await filesystem.stat('/SOMEFO~1')).path).toBe('/Some Folder');
      expect((await filesystem.stat('/efi/boot/bootx64.efi')).path).toBe('/EFI/BOOT/BOOTX64.EFI');
      expect((await filesystem.list('/some folder/deeper')).map((child) => child.path)).toEqual(['/Some Folder/Deeper/deep.bin']);
    });
  });

  it('answers NOT_FOUND, NOT_A_DIRECTORY and IS_A_DIRECTORY as the interface says', async () => {
    await withVolume(scenario(width).image, async (filesystem) => {
      expect(await errorCode(filesystem.stat('/no such file'))).toBe('NOT_FOUND');
      expect(await errorCode(filesystem.list('/Some Folder/nothing here'))).toBe('NOT_FOUND');
      expect(await errorCode(filesystem.list('/hello.txt'))).toBe('NOT_A_DIRECTORY');
      expect(await errorCode(filesystem.stat('/hello.txt/below'))).toBe('NOT_A_DIRECTORY');
      expect(await errorCode(filesystem.read('/EFI', new Uint8Array(4), 0))).toBe('IS_A_DIRECTORY');
      expect(await errorCode(filesystem.read('/hello.txt', new Uint8Array(4), -1))).toBe('INVALID_ARGUMENT');
    });
  });

  it("gives a file's clusters as byte ranges of the volume that hold its bytes; the fragmented file has several", async () => {
    const { image, files, fragmented } = scenario(width);
    await withVolume(image, async (filesystem, volume) => {
      for (const file of files) {
        const ranges = (await filesystem.extents?.(file.path)) ?? [];
        const total = ranges.reduce((sum, range) => sum + range.length, 0);
        expect(total).toBeGreaterThanOrEqual(file.bytes.length);
        const gathered = new Uint8Array(total);
        let at = 0;
        for (const range of ranges) {
          await volume.read(gathered.subarray(at, at + range.length), range.offset);
          at += range.length;
        }
        expect(Buffer.from(gathered.subarray(0, file.bytes.length)).equals(Buffer.from(file.bytes))).toBe(true);
      }
      expect(((await filesystem.extents?.(fragmented)) ?? []).length).toBeGreaterThan(1);
      expect(await filesystem.extents?.('/empty.dat')).toEqual([]);
    });
  });
});

describe('FAT probe', () => {
  it('says no to ext4 and NTFS volumes made by their mkfs, and to zeros', async () => {
    const ext4 = folder.file('ext4.img');
    const ntfs = folder.file('ntfs.img');
    fs.writeFileSync(ext4, new Uint8Array(0));
    fs.truncateSync(ext4, 4 * 1024 * 1024);
    fs.writeFileSync(ntfs, new Uint8Array(0));
    fs.truncateSync(ntfs, 8 * 1024 * 1024);
    await runTool('mkfs.ext4', ['-F', '-q', ext4]);
    await runTool('mkntfs', ['-F', '-q', '-Q', ntfs]);
    for (const image of [ext4, ntfs]) {
      const volume = fileVolume(image);
      try {
        expect([image, await FAT_READER.probe(volume)]).toEqual([image, false]);
      } finally {
        volume.close();
      }
    }
    expect(await FAT_READER.probe(bytesVolume(new Uint8Array(4096)))).toBe(false);
    expect(await FAT_READER.probe(bytesVolume(new Uint8Array(100)))).toBe(false);
  });
});

describe('FAT through qemu-img and the engine', () => {
  it('a FAT32 volume converted to qcow2 reads the same through openGuestReader', async () => {
    const { image, files } = scenario(32);
    const qcow2 = folder.file('fat32.qcow2');
    await qemuImg(['convert', '-q', '-f', 'raw', '-O', 'qcow2', image, qcow2]);
    const reader = openGuestReader(qcow2, 'qcow2');
    try {
      const filesystem = await FAT_READER.open(guestVolume(reader));
      const paths = (await walk(filesystem)).map((entry) => entry.path).sort();
      expect(paths).toEqual(await mtoolsPaths(image));
      for (const file of files) {
        expect((await filesystem.stat(file.path)).mtimeMs).toBe(file.mtimeMs);
        expect(Buffer.from(await readAll(filesystem, file.path, 64 * 1024)).equals(Buffer.from(file.bytes))).toBe(true);
      }
      await filesystem.close();
    } finally {
      reader.close();
    }
  });
});

describe('FAT names that full case mapping would confuse', () => {
  it('lists "straße.txt" and "STRASSE.TXT" in one folder as the two files FAT holds, and finds each', async () => {
    const image = folder.file('names.img');
    await runTool('mkfs.fat', ['-C', image, '8192']);
    const host = folder.file('host-names');
    fs.mkdirSync(host);
    fs.writeFileSync(`${host}/straße.txt`, 'with sharp s\n');
    fs.writeFileSync(`${host}/STRASSE.TXT`, 'with SS\n');
    await fatTool('mcopy', ['-i', image, `${host}/straße.txt`, '::straße.txt']);
    await fatTool('mcopy', ['-i', image, `${host}/STRASSE.TXT`, '::STRASSE.TXT']);
    expect(await mtoolsPaths(image)).toEqual(['/STRASSE.TXT', '/straße.txt']);
    await withVolume(image, async (filesystem) => {
      expect((await filesystem.list('/')).map((entry) => entry.name).sort()).toEqual(['STRASSE.TXT', 'straße.txt']);
      expect(new TextDecoder().decode(await readAll(filesystem, '/straße.txt'))).toBe('with sharp s\n');
      expect(new TextDecoder().decode(await readAll(filesystem, '/strasse.txt'))).toBe('with SS\n');
      expect((await filesystem.stat('/STRAßE.TXT')).path).toBe('/straße.txt');
    });
  });
});
