/**
 * One damaged part of a partition table hides no more than it does for Linux: a damaged extended
 * boot record (no boot signature, a loop, past the disk's end) keeps the logical partitions before
 * it and every primary one; a GPT whose primary header or entry array is damaged is read from its
 * backup. Tables made by sfdisk and sgdisk, damaged with Node, and what Cowbell lists compared with
 * what `partx --show` (libblkid) and `sgdisk -p` report for the same raw file.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { stateFilesOf } from '../../../src/shared/qcow2/files/state-files.ts';
import { makeExtImage, makePartitionedDisk, MiB, type PartitionSpec } from '../../helpers/guest-filesystems.ts';
import { runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { memoryReader, withFiles } from '../../helpers/memory-guest.ts';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

/** A partition as [number, offset, length] in bytes. */
type Listed = [string, number, number];

const EXTENDED_TYPES = new Set(['0x5', '0xf', '0x85']);

let folder: TempDir;
let ext4: Uint8Array;
beforeAll(async () => {
  folder = tempDir();
  const image = folder.file('small.ext4');
  await makeExtImage(image, 4, { 'top.txt': 'top\n' });
  ext4 = new Uint8Array(fs.readFileSync(image));
});
afterAll(() => folder.cleanup());


async function cowbellLists(bytes: Uint8Array): Promise<Listed[]> {
  return withFiles(bytes, (files) => Promise.resolve(files.volumes.map((volume): Listed => [volume.name, volume.offset, volume.length])));
}

let diskCount = 0;
/** Writes bytes to a new raw file, for the Linux tools. */
function rawFile(bytes: Uint8Array): string {
  const file = folder.file(`damaged-${diskCount++}.raw`);
  fs.writeFileSync(file, bytes);
  return file;
}

/** What partx (libblkid) lists, without the extended partition itself (Cowbell lists only what it holds). */
async function partxLists(bytes: Uint8Array): Promise<Listed[]> {
  const { stdout } = await runTool('partx', ['--show', '--bytes', '--noheadings', '--output', 'NR,START,SECTORS,TYPE', rawFile(bytes)]);
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => line.trim().split(/\s+/))
    .filter(([, , , type]) => !EXTENDED_TYPES.has(type ?? ''))
    .map(([number, start, sectors]): Listed => [String(number), Number(start) * 512, Number(sectors) * 512]);
}

/** What `sgdisk -p` prints in its partition list (it reads a damaged primary table from the backup). */
async function sgdiskLists(bytes: Uint8Array): Promise<Listed[]> {
  const { stdout } = await runTool('sgdisk', ['-p', rawFile(bytes)]);
  const list = stdout.slice(stdout.indexOf('Number  Start (sector)'));
  return [...list.matchAll(/^\s+(\d+)\s+(\d+)\s+(\d+)\s/gm)].map((match): Listed => [String(match[1]), Number(match[2]) * 512, (Number(match[3]) - Number(match[2]) + 1) * 512]);
}

async function rawDisk(table: 'mbr' | 'gpt', partitions: PartitionSpec[]): Promise<Uint8Array> {
  const file = folder.file(`${table}-${diskCount++}.raw`);
  await makePartitionedDisk(file, 24, table, partitions);
  return new Uint8Array(fs.readFileSync(file));
}

const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

describe('a partition that runs past the end of the disk', () => {
  it('is cut at the end, as Linux cuts it, and the filesystem that fits is read (it was refused whole)', async () => {
    const file = folder.file(`past-end-${diskCount++}.raw`);
    await makePartitionedDisk(file, 48, 'mbr', [{ startMiB: 1, sizeMiB: 40, type: '83' }]);
    // The disk cut to 24 MiB, as a shrunk or truncated image is: the table still says 40 MiB.
    const bytes = new Uint8Array(fs.readFileSync(file)).slice(0, 24 * MiB);
    bytes.set(ext4, 1 * MiB);
    expect(await cowbellLists(bytes)).toEqual([['1', 1 * MiB, 23 * MiB]]);
    await withFiles(bytes, async (files) => {
      expect(files.volumes[0]?.problem).toBeUndefined();
      expect((await files.list('/1')).map((entry) => entry.name)).toContain('top.txt');
    });
  });
});

describe('a damaged extended boot record', () => {
  const extendedSector = 5 * 2048;
  let disk: Uint8Array;
  /** The second record, where sfdisk put it: the first record's "next" entry, relative to the extended partition. */
  let secondRecord: number;
  beforeAll(async () => {
    disk = await rawDisk('mbr', [
      { startMiB: 1, sizeMiB: 4, type: '83' },
      { startMiB: 5, sizeMiB: 16, type: '5' },
      { startMiB: 6, sizeMiB: 4, type: '83' },
      { startMiB: 11, sizeMiB: 4, type: '83' },
    ]);
    disk.set(ext4, 1 * MiB);
    secondRecord = (extendedSector + view(disk).getUint32(extendedSector * 512 + 462 + 8, true)) * 512;
    expect(await cowbellLists(disk)).toEqual([
      ['1', 1 * MiB, 4 * MiB],
      ['5', 6 * MiB, 4 * MiB],
      ['6', 11 * MiB, 4 * MiB],
    ]);
  });

  it('without its boot signature keeps the primary partition and the logical one before it, as partx does', async () => {
    const bytes = disk.slice();
    bytes.fill(0, secondRecord + 510, secondRecord + 512);
    const listed = await cowbellLists(bytes);
    expect(listed).toEqual([
      ['1', 1 * MiB, 4 * MiB],
      ['5', 6 * MiB, 4 * MiB],
    ]);
    expect(listed).toEqual(await partxLists(bytes));
    await withFiles(bytes, async (files) => expect((await files.list('/1')).map((entry) => entry.name)).toContain('top.txt'));
  });

  it('that points back to the first record ends the chain there, as partx does', async () => {
    const bytes = disk.slice();
    // The second record's "next" entry: the first record (start 0 relative to the extended partition).
    const next = secondRecord + 446 + 16;
    bytes[next + 4] = 0x05;
    view(bytes).setUint32(next + 8, 0, true);
    view(bytes).setUint32(next + 12, 2048, true);
    const listed = await cowbellLists(bytes);
    expect(listed).toEqual([
      ['1', 1 * MiB, 4 * MiB],
      ['5', 6 * MiB, 4 * MiB],
      ['6', 11 * MiB, 4 * MiB],
    ]);
    expect(listed).toEqual(await partxLists(bytes));
  });

  it('that points to itself keeps what came before, as partx does', async () => {
    const bytes = disk.slice();
    const first = extendedSector * 512;
    view(bytes).setUint32(first + 462 + 8, 0, true);
    bytes[first + 462 + 4] = 0x05;
    const listed = await cowbellLists(bytes);
    expect(listed).toEqual([
      ['1', 1 * MiB, 4 * MiB],
      ['5', 6 * MiB, 4 * MiB],
    ]);
    expect(listed).toEqual(await partxLists(bytes));
  });

  it('past the end of the disk keeps what came before, as partx does', async () => {
    const bytes = disk.slice();
    view(bytes).setUint32(extendedSector * 512 + 462 + 8, 0x7fff0000, true);
    const listed = await cowbellLists(bytes);
    expect(listed).toEqual([
      ['1', 1 * MiB, 4 * MiB],
      ['5', 6 * MiB, 4 * MiB],
    ]);
    expect(listed).toEqual(await partxLists(bytes));
  });
});

describe('a damaged primary GPT', () => {
  let disk: Uint8Array;
  const backupHeader = (bytes: Uint8Array): number => bytes.length - 512;
  beforeAll(async () => {
    disk = await rawDisk('gpt', [{ startMiB: 1, sizeMiB: 8, type: '8300' }]);
    disk.set(ext4, 1 * MiB);
    expect(await cowbellLists(disk)).toEqual([['1', 1 * MiB, 8 * MiB]]);
  });

  it('whose entry array fails its checksum is read from the backup, as partx and sgdisk read it', async () => {
    const bytes = disk.slice();
    // A byte of the first entry's first sector, in the primary array (LBA 2): the primary header still checks out.
    bytes.set([(bytes.at(1024 + 32) ?? 0) ^ 0x01], 1024 + 32);
    const listed = await cowbellLists(bytes);
    expect(listed).toEqual([['1', 1 * MiB, 8 * MiB]]);
    expect(listed).toEqual(await partxLists(bytes));
    expect(listed).toEqual(await sgdiskLists(bytes));
    await withFiles(bytes, async (files) => expect((await files.list('/1')).map((entry) => entry.name)).toContain('top.txt'));
  });

  it('whose header has no signature is read from the backup, as partx and sgdisk read it; with the backup damaged too it stays FILESYSTEM_CORRUPT', async () => {
    const bytes = disk.slice();
    bytes[512] = 'X'.charCodeAt(0);
    const listed = await cowbellLists(bytes);
    expect(listed).toEqual([['1', 1 * MiB, 8 * MiB]]);
    expect(listed).toEqual(await partxLists(bytes));
    expect(listed).toEqual(await sgdiskLists(bytes));

    bytes[backupHeader(bytes)] = 'X'.charCodeAt(0);
    expect(await partxLists(bytes)).toEqual([]);
    await expect(stateFilesOf(memoryReader(bytes))).rejects.toMatchObject({ code: 'FILESYSTEM_CORRUPT', message: expect.stringContaining('no readable GPT header') });
  });

  it('whose entry array and its backup both fail their checksums is FILESYSTEM_CORRUPT, naming both', async () => {
    const bytes = disk.slice();
    bytes.set([(bytes.at(1024 + 32) ?? 0) ^ 0x01], 1024 + 32);
    await expect(cowbellLists(bytes)).resolves.toEqual([['1', 1 * MiB, 8 * MiB]]);
    const backupEntries = Number(view(bytes).getBigUint64(backupHeader(bytes) + 72, true)) * 512;
    bytes.set([(bytes.at(backupEntries + 32) ?? 0) ^ 0x01], backupEntries + 32);
    await expect(stateFilesOf(memoryReader(bytes))).rejects.toMatchObject({
      code: 'FILESYSTEM_CORRUPT',
      message: expect.stringMatching(/damaged: the partition entries do not match their checksum; its backup: the partition entries do not match their checksum/),
    });
  });
});
