/**
 * `cowbell resize IMAGE [+|-]SIZE` against what qemu-img sees afterwards: one run as a user runs it
 * (bin/cowbell in its own process, for the real exit code), the rest through runCli in this process.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { run } from '../helpers/cli.ts';
import { holdWithQemuIo } from '../helpers/image-locks.ts';
import { qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';
import { expectCheckClean, fileHash } from '../helpers/snapshot-scenario.ts';

const launcher = fileURLToPath(new URL('../../bin/cowbell', import.meta.url));
vi.setConfig({ testTimeout: 60_000 });

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

let counter = 0;
async function disk(size: string, options = 'cluster_size=512'): Promise<string> {
  const image = folder.file(`disk-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', options, image, size]);
  return image;
}

describe('cowbell resize', () => {
  it('grows a disk as qemu-img resize does (bin/cowbell, exit 0, "Image resized.")', async () => {
    const image = await disk('1M');
    await qemuIo(image, ['write -P 0x31 0 64k']);
    const result = spawnSync(launcher, ['resize', image, '5M'], { encoding: 'utf8' });
    expect({ code: result.status, out: result.stdout, err: result.stderr }).toEqual({ code: 0, out: 'Image resized.\n', err: '' });
    expect((await qemuInfo(image))['virtual-size']).toBe(5 * 1024 * 1024);
    await expectCheckClean(expect, image, 'grown');
    const raw = await rawOf(image);
    expect(raw.subarray(0, 64 * 1024).every((byte) => byte === 0x31)).toBe(true);
    expect(raw.subarray(64 * 1024).every((byte) => byte === 0)).toBe(true);
  });

  it('takes +SIZE and -SIZE relative to the current size, -SIZE without "--"', async () => {
    const image = await disk('1M');
    expect((await run('resize', '-q', image, '+1M')).code).toBe(0);
    expect((await qemuInfo(image))['virtual-size']).toBe(2 * 1024 * 1024);
    expect(await run('resize', '--shrink', image, '-512K')).toEqual({ code: 0, out: 'Image resized.\n', err: '' });
    expect((await qemuInfo(image))['virtual-size']).toBe(1536 * 1024);
    const json = await run('resize', '--json', image, '+512K');
    expect(JSON.parse(json.out)).toEqual({ previousSize: 1536 * 1024, newSize: 2 * 1024 * 1024, l1Grown: false, discardedBytes: 0 });
    expect((await run('resize', '--shrink', image, '-2M')).code).toBe(2);
    await expectCheckClean(expect, image, 'relative sizes');
  });

  it('refuses a shrink without --shrink, and one over data without --discard-data, naming each state; changes nothing', async () => {
    const image = await disk('2M');
    await qemuIo(image, ['write -P 0x41 1M 64k']);
    await qemuImg(['snapshot', '-c', 'before', image]);
    await qemuIo(image, ['write -P 0x42 1536k 4k']);
    const hash = fileHash(image);

    const noShrink = await run('resize', image, '512K');
    expect(noShrink.code).toBe(1);
    expect(noShrink.err).toContain('needs --shrink');

    const refused = await run('resize', '--shrink', image, '512K');
    expect(refused.code).toBe(1);
    expect(refused.out).toBe('');
    expect(refused.err).toContain('current disk: 69632 bytes (68 KiB) past the new end, would be lost');
    expect(refused.err).toContain('snapshot 1 "before": 65536 bytes (64 KiB) past the new end, kept');
    expect(refused.err).toContain('--discard-data');
    expect(fileHash(image)).toBe(hash);

    expect((await run('resize', '--discard-data', image, '512K')).code).toBe(2);

    const done = await run('resize', '--shrink', '--discard-data', image, '512K');
    expect(done).toEqual({ code: 0, out: 'Image resized.\nDiscarded 68 KiB of data past the new end.\n', err: '' });
    expect((await qemuInfo(image))['virtual-size']).toBe(512 * 1024);
    await expectCheckClean(expect, image, 'shrunk');
  });

  it('refuses while another program writes the disk, and leaves it as it was', async () => {
    const image = await disk('1M');
    const holder = await holdWithQemuIo(image);
    try {
      const hash = fileHash(image);
      const result = await run('resize', image, '2M');
      expect(result.code).toBe(1);
      expect(result.err).toMatch(/in use by another program \(a running VM or qemu-nbd\)/);
      expect(fileHash(image)).toBe(hash);
    } finally {
      await holder.release();
    }
  });
});
