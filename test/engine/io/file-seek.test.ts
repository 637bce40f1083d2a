import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileSize } from '../../../src/shared/qcow2/io/block-file.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { seekEnd } from '../../../src/shared/qcow2/io/file-seek.ts';
import { qemuCompare, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const MiB = 1024 * 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** A read-only loop device over `image` (root and losetup needed), or why there is none. */
function attachLoop(image: string): { device: string } | { missing: string } {
  if (process.getuid?.() !== 0) return { missing: 'not root' };
  const result = spawnSync('losetup', ['--find', '--show', '--read-only', image], { encoding: 'utf8' });
  if (result.status !== 0) return { missing: `losetup failed: ${(result.stderr || String(result.error)).trim()}` };
  return { device: result.stdout.trim() };
}

describe('file sizes', () => {
  it('seekEnd gives a regular file its size', () => {
    const filePath = folder.file('five.bin');
    fs.writeFileSync(filePath, Buffer.alloc(5 * MiB + 3));
    const fd = fs.openSync(filePath, 'r');
    try {
      expect(seekEnd(fd)).toBe(5 * MiB + 3);
      expect(fileSize(fd, filePath)).toBe(5 * MiB + 3);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('a block device has its real size (fstat says 0), and converts whole', async (context) => {
    const backing = folder.file('device.img');
    const bytes = new SeededRandom(3).bytes(6 * MiB);
    bytes.fill(0, MiB, 4 * MiB);
    fs.writeFileSync(backing, bytes);
    const loop = attachLoop(backing);
    if ('missing' in loop) {
      // Reported as skipped, with the reason, never as passed.
      context.skip(`no loop device to test with here (${loop.missing})`);
      return;
    }
    try {
      const fd = fs.openSync(loop.device, 'r');
      try {
        expect(fs.fstatSync(fd).size).toBe(0);
        expect(fileSize(fd, loop.device)).toBe(6 * MiB);
      } finally {
        fs.closeSync(fd);
      }
      const target = folder.file('device.qcow2');
      const result = convertImage({ source: loop.device, sourceFormat: 'raw', target, targetFormat: 'qcow2' });
      expect(result.virtualSize).toBe(6 * MiB);
      const compare = await qemuCompare(target, backing, { formatB: 'raw' });
      expect(compare.code, compare.output).toBe(0);
    } finally {
      spawnSync('losetup', ['--detach', loop.device]);
    }
  });
});
