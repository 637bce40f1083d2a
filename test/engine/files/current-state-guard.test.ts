/**
 * A copy of the current state keeps writers out while it reads (found by the concurrency audit:
 * copy-out took only a reader's lock, so a VM or qemu-io starting to write mid-copy tore the copy —
 * old bytes at the start, new at the end — and it said "Copied 1 file").
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openGuestReader } from '../../../src/shared/qcow2/image/image-format.ts';
import { qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

function qemuIoWrite(image: string): string {
  const result = spawnSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 0 4k', image], { encoding: 'utf8' });
  return result.stdout + result.stderr;
}

describe('the current state opened guarded', () => {
  it('keeps QEMU from starting to write it until closed; unguarded (browsing) it does not', async () => {
    const image = folder.file('disk.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    const guarded = openGuestReader(image, undefined, { guard: true });
    try {
      expect(qemuIoWrite(image)).toMatch(/Failed to get "write" lock/);
    } finally {
      guarded.close();
    }
    const browsing = openGuestReader(image);
    try {
      expect(qemuIoWrite(image)).not.toMatch(/lock/);
    } finally {
      browsing.close();
    }
  });
});
