/**
 * Volumes that hold no filesystem Cowbell reads are named for what they hold, by partition type or
 * signature: a GPT disk made by sfdisk with a BIOS boot partition, a swap area made by mkswap (under
 * a plain Linux type, so its signature tells), a LUKS2 header's and a BitLocker boot sector's
 * signatures, a Microsoft reserved partition, and one of random bytes (nothing named). ls of such a
 * volume says what it is.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { qemuImg, runTool, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const MiB = 1024 * 1024;
let folder: TempDir;
let disk = '';

beforeAll(async () => {
  folder = tempDir();
  const raw = folder.file('disk.raw');
  fs.writeFileSync(raw, Buffer.alloc(0));
  fs.truncateSync(raw, 32 * MiB);
  const table = [
    'label: gpt',
    'start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649', // 1: BIOS boot
    'start=4096, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4', // 2: swap under a plain Linux type
    'start=12288, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4', // 3: LUKS2
    'start=20480, size=8192, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7', // 4: BitLocker
    'start=28672, size=8192, type=E3C9E316-0B5C-4DB8-817D-F92DF00215AE', // 5: Microsoft reserved
    'start=36864, size=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4', // 6: random bytes
  ].join('\n');
  const script = folder.file('table.sfdisk');
  fs.writeFileSync(script, `${table}\n`);
  expect((await runTool('sh', ['-c', 'sfdisk -q "$0" < "$1"', raw, script])).code).toBe(0);
  const swap = folder.file('swap.raw');
  fs.writeFileSync(swap, Buffer.alloc(4 * MiB));
  expect((await runTool('mkswap', ['-q', swap])).code).toBe(0);
  const fd = fs.openSync(raw, 'r+');
  try {
    fs.writeSync(fd, fs.readFileSync(swap), 0, 4 * MiB, 4096 * 512);
    fs.writeSync(fd, Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe, 0x00, 0x02]), 0, 8, 12288 * 512);
    fs.writeSync(fd, Buffer.concat([Buffer.from([0xeb, 0x58, 0x90]), Buffer.from('-FVE-FS-', 'latin1')]), 0, 11, 20480 * 512);
    fs.writeSync(fd, Buffer.from(new SeededRandom(7).bytes(64 * 1024)), 0, 64 * 1024, 36864 * 512);
  } finally {
    fs.closeSync(fd);
  }
  disk = folder.file('disk.qcow2');
  await qemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, disk]);
});
afterAll(() => folder.cleanup());

describe('volumes that hold no filesystem Cowbell reads', () => {
  it('are named for what they hold, by partition type or signature', async () => {
    const files = await openStateFiles(disk, 'current');
    try {
      expect(files.volumes.map((volume) => [volume.name, volume.filesystem, volume.holds, volume.problem])).toEqual([
        ['1', null, 'bios-boot', undefined],
        ['2', null, 'swap', undefined],
        // Only the signature is there: its header, read to describe it, is found damaged.
        ['3', null, 'luks', expect.stringMatching(/^The LUKS2 header is damaged: /)],
        ['4', null, 'bitlocker', undefined],
        ['5', null, 'microsoft-reserved', undefined],
        ['6', null, undefined, undefined],
      ]);
      await expect(files.list('/2')).rejects.toMatchObject({ code: 'NO_FILESYSTEM', message: 'Volume /2 is swap space: it holds no files Cowbell can list' });
      await expect(files.list('/6')).rejects.toMatchObject({ code: 'NO_FILESYSTEM', message: expect.stringMatching(/holds no filesystem Cowbell can read/) });
    } finally {
      await files.close();
    }
  });
});
