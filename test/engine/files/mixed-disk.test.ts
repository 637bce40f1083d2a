/**
 * A disk laid out as a dual-boot guest's: GPT (sgdisk) with an EFI system partition in FAT32
 * (mkfs.fat, mtools), an ext4 root (mke2fs -d) and an NTFS volume (mkntfs, ntfscp), made a qcow2 by
 * qemu-img with a snapshot before the tools change a file on each. Through openStateFiles: the
 * volumes and their filesystems, files read from each, and files-diff naming exactly the changed
 * files on all three volumes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { diffStatesByName } from '../../../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles, type StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { debugfs, makeExtImage, makePartitionedDisk, MiB, placeImage, qcow2FromRaw, qemuSnapshot, writeRawIntoQcow2 } from '../../helpers/guest-filesystems.ts';
import { mkntfs, ntfscp } from '../../helpers/ntfs-tools.ts';
import { qemuCheck, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { fatTool } from './fat-fixtures.ts';

vi.setConfig({ testTimeout: 60_000, hookTimeout: 120_000 });

const ESP = { startMiB: 1, sizeMiB: 40 };
const ROOT = { startMiB: 41, sizeMiB: 16 };
const WINDOWS = { startMiB: 57, sizeMiB: 16 };

let folder: TempDir;
let disk: string;
let raw: string;
const images = { esp: '', root: '', windows: '' };

function hostFile(name: string, content: string): string {
  const file = path.join(folder.path, 'host', name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, content);
  return file;
}

function placeAll(): void {
  placeImage(raw, images.esp, ESP.startMiB * MiB);
  placeImage(raw, images.root, ROOT.startMiB * MiB);
  placeImage(raw, images.windows, WINDOWS.startMiB * MiB);
}

async function text(files: StateFiles, guestPath: string): Promise<string> {
  const { size } = await files.stat(guestPath);
  const bytes = new Uint8Array(size);
  let done = 0;
  while (done < size) done += await files.read(guestPath, bytes.subarray(done), done);
  return new TextDecoder().decode(bytes);
}

beforeAll(async () => {
  folder = tempDir();
  raw = folder.file('dual-boot.raw');
  await makePartitionedDisk(raw, 80, 'gpt', [
    { ...ESP, type: 'EF00' },
    { ...ROOT, type: '8300' },
    { ...WINDOWS, type: '0700' },
  ]);
  images.esp = folder.file('esp.img');
  await fatTool('mkfs.fat', ['-F', '32', '-n', 'ESP', '-C', images.esp, String(ESP.sizeMiB * 1024)]);
  await fatTool('mmd', ['-i', images.esp, '::EFI', '::EFI/BOOT']);
  await fatTool('mcopy', ['-i', images.esp, hostFile('grub.cfg', 'set timeout=5\n'), '::EFI/BOOT/grub.cfg']);
  images.root = folder.file('root.ext4');
  await makeExtImage(images.root, ROOT.sizeMiB, { 'etc/hostname': 'dual\n', 'etc/fstab': '# none\n' }, { label: 'root' });
  images.windows = folder.file('windows.ntfs');
  fs.writeFileSync(images.windows, '');
  fs.truncateSync(images.windows, WINDOWS.sizeMiB * MiB);
  await mkntfs(images.windows, 'Windows');
  await ntfscp(images.windows, hostFile('boot.ini', '[boot loader]\r\n'), '/boot.ini');
  placeAll();
  disk = folder.file('dual-boot.qcow2');
  await qcow2FromRaw(raw, disk);
  await qemuSnapshot(disk, 'installed');
  // After the snapshot: each volume changed by its own tool, the disk rewritten through qemu-img.
  await fatTool('mcopy', ['-o', '-i', images.esp, hostFile('grub2.cfg', 'set timeout=0\nset default=1\n'), '::EFI/BOOT/grub.cfg']);
  await debugfs(images.root, [`write ${hostFile('motd', 'hello\n')} /etc/motd`]);
  await ntfscp(images.windows, hostFile('notes.txt', 'written by Windows\r\n'), '/notes.txt');
  placeAll();
  await writeRawIntoQcow2(raw, disk);
  expect((await qemuCheck(disk)).code).toBe(0);
});
afterAll(() => folder.cleanup());

describe('a dual-boot guest: GPT with FAT32, ext4 and NTFS', () => {
  it('shows each partition with the filesystem and label on it, and reads a file from each', async () => {
    const files = await openStateFiles(disk, 'installed');
    try {
      expect(files.volumes.map((volume) => [volume.name, volume.table, volume.filesystem, volume.label, volume.offset])).toEqual([
        ['1', 'gpt', 'fat', 'ESP', ESP.startMiB * MiB],
        ['2', 'gpt', 'ext', 'root', ROOT.startMiB * MiB],
        ['3', 'gpt', 'ntfs', 'Windows', WINDOWS.startMiB * MiB],
      ]);
      expect((await files.list('/')).map((entry) => [entry.name, entry.kind])).toEqual([
        ['1', 'directory'],
        ['2', 'directory'],
        ['3', 'directory'],
      ]);
      expect(await text(files, '/1/EFI/BOOT/grub.cfg')).toBe('set timeout=5\n');
      expect(await text(files, '/1/efi/boot/GRUB.CFG')).toBe('set timeout=5\n');
      expect(await text(files, '/2/etc/hostname')).toBe('dual\n');
      expect(await text(files, '/3/boot.ini')).toBe('[boot loader]\r\n');
      await expect(files.stat('/3/notes.txt')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    } finally {
      await files.close();
    }
  });

  it('files-diff names the file changed on each volume and nothing else', async () => {
    const result = await diffStatesByName((state) => openStateFiles(disk, state), 'installed', 'current', () => readDiff(disk, 'installed', 'current').ranges);
    expect(result.skipped).toEqual([]);
    expect(result.differences.map((difference) => [difference.change, difference.path])).toEqual([
      ['changed', '/1/EFI/BOOT/grub.cfg'],
      ['added', '/2/etc/motd'],
      ['added', '/3/notes.txt'],
    ]);
    const current = await openStateFiles(disk, 'current');
    try {
      expect(await text(current, '/1/EFI/BOOT/grub.cfg')).toBe('set timeout=0\nset default=1\n');
      expect(await text(current, '/3/notes.txt')).toBe('written by Windows\r\n');
    } finally {
      await current.close();
    }
  });
});
