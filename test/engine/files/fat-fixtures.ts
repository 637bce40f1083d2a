/**
 * FAT volumes made by the real tools for the FAT reader's tests: mkfs.fat on a raw file, folders
 * by `mmd`, files by `mcopy -m` (which keeps the host file's mtime, written as local time: the
 * tools run with TZ=UTC so the FAT time is the UTC time set here), and a small VolumeBytes over a
 * raw file, bytes in memory or the engine's guest reader.
 */
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { VolumeBytes } from '../../../src/shared/qcow2/files/filesystem.ts';
import type { GuestReader } from '../../../src/shared/qcow2/image/guest-reader.ts';
import { compressibleBytes, SeededRandom } from '../../helpers/seeded-random.ts';

export function fatTool(tool: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, TZ: 'UTC', MTOOLS_SKIP_CHECK: '1', LC_ALL: 'C.UTF-8' };
    execFile(tool, args, { env, encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (error !== null) reject(new Error(`${tool} ${args.join(' ')} failed: ${stderr}${stdout}`));
      else resolve(stdout);
    });
  });
}

/** One file of a scenario: its volume path, content and mtime. */
export interface FatFile {
  path: string;
  bytes: Uint8Array;
  mtimeMs: number;
}

export interface FatScenario {
  image: string;
  label: string;
  folders: string[];
  /** Files as they are on the volume at the end (deleted ones gone). */
  files: FatFile[];
  /** A file written into the hole a deleted file left, so its clusters are in two or more runs. */
  fragmented: string;
}

/** Every file's mtime is an even second in 2021 (FAT keeps 2-second steps). */
function mtimeFor(index: number): number {
  return Date.UTC(2021, 2, 4, 5, 6, 8) + index * 3600_000 * 26 + index * 62_000;
}

/**
 * A volume of `width` made by mkfs.fat and filled by mtools: long and short names (lowercase 8.3
 * names get NT's case bits), nested folders, an empty file, a file over many clusters, a folder
 * of many entries, and a file fragmented around a kept one by deleting the file between.
 */
export async function buildFatScenario(folder: string, width: 12 | 16 | 32, options: { small?: boolean } = {}): Promise<FatScenario> {
  const image = path.join(folder, `fat${width}${options.small === true ? '-small' : ''}.img`);
  const label = `COWBELL${width}`;
  // FAT32 needs Microsoft's minimum of 65525 clusters for mtools to take it for FAT32 (it decides
  // by the count): 33 MiB of 512-byte clusters. The small volumes are for the fuzzer, which writes one per case.
  const sizeKiB = options.small === true ? { 12: 1024, 16: 5 * 1024, 32: 33 * 1024 }[width] : { 12: 2048, 16: 16 * 1024, 32: 40 * 1024 }[width];
  const sectorsPerCluster = width === 12 && options.small !== true ? 2 : 1;
  fs.rmSync(image, { force: true });
  await fatTool('mkfs.fat', ['--invariant', '-C', '-F', String(width), '-n', label, '-s', String(sectorsPerCluster), image, String(sizeKiB)]);
  const random = new SeededRandom(width);
  const staging = path.join(folder, `staging-${width}`);
  fs.mkdirSync(staging, { recursive: true });
  const files: FatFile[] = [];
  const put = async (volumePath: string, bytes: Uint8Array): Promise<void> => {
    const mtimeMs = mtimeFor(files.length);
    const host = path.join(staging, `file-${files.length}`);
    fs.writeFileSync(host, bytes);
    fs.utimesSync(host, mtimeMs / 1000, mtimeMs / 1000);
    await fatTool('mcopy', ['-m', '-i', image, host, `::${volumePath}`]);
    files.push({ path: volumePath, bytes, mtimeMs });
  };
  const folders = ['/Some Folder', '/Some Folder/Deeper', '/EFI', '/EFI/BOOT', '/Many'];
  for (const name of folders) await fatTool('mmd', ['-i', image, `::${name}`]);

  await put('/hello.txt', new TextEncoder().encode('hello from a FAT volume\n'));
  await put('/lower.txt', new TextEncoder().encode('an 8.3 name in lowercase\n'));
  await put('/MixedCase.Txt', new TextEncoder().encode('mixed case needs a long name\n'));
  await put('/Some Folder/Ein langer Name äöü – ✓.txt', compressibleBytes(5000, width));
  await put('/Some Folder/Deeper/deep.bin', random.bytes(3000));
  await put('/EFI/BOOT/BOOTX64.EFI', random.bytes(20_000));
  await put('/empty.dat', new Uint8Array(0));
  await put('/big.bin', random.bytes(300 * 1024 + 17));
  for (let index = 0; index < 40; index++) await put(`/Many/entry number ${index} with a long name.txt`, new TextEncoder().encode(`entry ${index}\n`));

  // Fragmentation: a, hole, c; then a file larger than the hole fills it and goes on after c.
  await put('/frag-a.bin', random.bytes(6000));
  await put('/frag-hole.bin', random.bytes(6000));
  await put('/frag-c.bin', random.bytes(6000));
  await fatTool('mdel', ['-i', image, '::/frag-hole.bin']);
  // mtools allocates FAT32 clusters after its FSInfo "next free" hint; "unknown" makes it search from the start, into the hole.
  if (width === 32) forgetNextFreeHint(image);
  const kept = files.filter((file) => file.path !== '/frag-hole.bin');
  files.length = 0;
  files.push(...kept);
  await put('/fragmented.bin', random.bytes(40_000));
  return { image, label, folders, files, fragmented: '/fragmented.bin' };
}

/** Sets the FAT32 FSInfo sector's next-free-cluster hint to 0xFFFFFFFF ("unknown"), as the FAT specification allows. */
function forgetNextFreeHint(image: string): void {
  const fd = fs.openSync(image, 'r+');
  try {
    const boot = Buffer.alloc(512);
    fs.readSync(fd, boot, 0, 512, 0);
    const fsInfoAt = boot.readUInt16LE(48) * boot.readUInt16LE(11);
    fs.writeSync(fd, Buffer.from([0xff, 0xff, 0xff, 0xff]), 0, 4, fsInfoAt + 0x1ec);
  } finally {
    fs.closeSync(fd);
  }
}

/** Every path mtools lists (`mdir -/ -b`), folders without their trailing slash. */
export async function mtoolsPaths(image: string): Promise<string[]> {
  const output = await fatTool('mdir', ['-/', '-b', '-i', image, '::']);
  return output
    .split('\n')
    .filter((line) => line.startsWith('::/'))
    .map((line) => line.slice(2).replace(/\/$/, ''))
    .sort();
}

/** A VolumeBytes over a raw file; a read past the end throws a plain Error (a reader bug, never expected). */
export function fileVolume(file: string): VolumeBytes & { close(): void } {
  const fd = fs.openSync(file, 'r');
  const length = fs.fstatSync(fd).size;
  return {
    length,
    read(buffer, offset) {
      if (offset < 0 || offset + buffer.length > length) throw new Error(`read of ${buffer.length} bytes at ${offset} past the volume's ${length}`);
      fs.readSync(fd, buffer, 0, buffer.length, offset);
      return Promise.resolve();
    },
    close: () => fs.closeSync(fd),
  };
}

/** A VolumeBytes over bytes in memory. */
export function bytesVolume(bytes: Uint8Array): VolumeBytes {
  return {
    length: bytes.length,
    read(buffer, offset) {
      if (offset < 0 || offset + buffer.length > bytes.length) throw new Error(`read of ${buffer.length} bytes at ${offset} past the volume's ${bytes.length}`);
      buffer.set(bytes.subarray(offset, offset + buffer.length));
      return Promise.resolve();
    },
  };
}

/** A VolumeBytes over the guest disk an engine GuestReader shows (the whole disk is the volume). */
export function guestVolume(reader: GuestReader): VolumeBytes {
  return {
    length: reader.virtualSize,
    read(buffer, offset) {
      if (offset < 0 || offset + buffer.length > reader.virtualSize) throw new Error(`read of ${buffer.length} bytes at ${offset} past the disk's ${reader.virtualSize}`);
      reader.readInto(buffer, offset);
      return Promise.resolve();
    },
  };
}
