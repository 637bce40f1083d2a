import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { run as runCli } from '../../helpers/cli.ts';

const hash = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

describe('images with persistent dirty bitmaps', () => {
  let dir: TempDir | null = null;
  afterEach(() => {
    dir?.cleanup();
    dir = null;
  });

  it('open read-only with the reason, refuse writes and snapshots, and keep the bitmaps valid for QEMU', async () => {
    dir = tempDir();
    const image = path.join(dir.path, 'backed-up.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '16M']);
    await qemuIo(image, ['write -P 0x5a 0 1M']);
    await qemuImg(['bitmap', '--add', image, 'backup0']);
    const before = hash(image);

    expect(readImageInfo(image)['read-only-reason']).toMatch(/dirty bitmaps/);
    const opened = Qcow2Image.open(image);
    expect(() => opened.write(new Uint8Array(512), 0)).toThrow(expect.objectContaining({ code: 'READ_ONLY' }));
    opened.close();
    let failure: unknown = null;
    try {
      takeSnapshot(image, 'would-invalidate');
    } catch (error) {
      failure = error;
    }
    expect(failure).toBeInstanceOf(Qcow2Error);
    expect((failure as Qcow2Error).code).toBe('READ_ONLY');

    expect(hash(image)).toBe(before);
    const check = await qemuCheck(image);
    expect(check.code).toBe(0);
    const info = await qemuImg(['info', '--output=json', image]);
    expect(JSON.parse(info.stdout)['format-specific'].data.bitmaps).toEqual([expect.objectContaining({ name: 'backup0' })]);
  });

  // Was: info left them out, where qemu-img info lists them.
  it('info lists them as qemu-img info does: JSON and text alike', async () => {
    dir = tempDir();
    const image = path.join(dir.path, 'listed.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '32M']);
    await qemuImg(['bitmap', '--add', image, 'b0']);
    await qemuImg(['bitmap', '--add', '-g', '131072', '--disable', image, 'second']);
    const qemu = JSON.parse((await qemuImg(['info', '--output=json', image])).stdout) as { 'format-specific': { data: unknown } };
    expect(readImageInfo(image)['format-specific'].data).toEqual(qemu['format-specific'].data);
    expect(JSON.stringify(readImageInfo(image)['format-specific'].data)).toBe(JSON.stringify(qemu['format-specific'].data));
    const cli = await runCli('info', image);
    const qemuText = (await qemuImg(['info', image])).stdout;
    const block = (text: string): string => text.slice(text.indexOf('Format specific information:'), text.indexOf('    refcount bits:'));
    expect(block(cli.out)).toBe(block(qemuText));
    expect(block(cli.out)).toContain('name: second');
  });
});

describe('check on a damaged bitmap directory', () => {
  let dir: TempDir | null = null;
  afterEach(() => {
    dir?.cleanup();
    dir = null;
  });

  /** A disk with one bitmap (two with `second`), the directory's offset and the extension's place in the file. */
  async function withBitmaps(name: string, second = false, size = '16M'): Promise<{ image: string; directory: number; extension: number }> {
    dir ??= tempDir();
    const image = path.join(dir.path, name);
    await qemuImg(['create', '-q', '-f', 'qcow2', image, size]);
    await qemuImg(['bitmap', '--add', image, 'bm1']);
    if (second) await qemuImg(['bitmap', '--add', image, 'bm2']);
    const bytes = fs.readFileSync(image);
    let at = bytes.readUInt32BE(100);
    while (bytes.readUInt32BE(at) !== 0x23852875) at += 8 + Math.ceil(bytes.readUInt32BE(at + 4) / 8) * 8;
    return { image, directory: Number(bytes.readBigUInt64BE(at + 24)), extension: at + 8 };
  }

  function poke(image: string, offset: number, bytes: number[]): void {
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, Buffer.from(bytes), 0, bytes.length, offset);
    fs.closeSync(fd);
  }

  // Each: what QEMU refuses (qemu-img check cannot open the image); Cowbell's check said "No errors".
  const cases: [string, string, (image: string, directory: number) => void][] = [
    ['a bitmap of an unknown type', '16M', (image, directory) => poke(image, directory + 16, [4])],
    ['a granularity under 512 bytes', '16M', (image, directory) => poke(image, directory + 17, [8])],
    ['reserved flags', '16M', (image, directory) => poke(image, directory + 12, [0, 0, 0, 0x86])],
    // 64 GiB at 64 KiB a bit needs a table of two clusters: one covers 32 GiB.
    ['a table too small for the disk', '64G', (image, directory) => poke(image, directory + 8, [0, 0, 0, 1])],
  ];
  it.each(cases)('%s is reported as corruption, as qemu-img check refuses the image', async (_label, size, damage) => {
    const { image, directory } = await withBitmaps('damaged.qcow2', false, size);
    damage(image, directory);
    expect((await qemuCheck(image)).code).not.toBe(0);
    const result = await runCli('check', image);
    expect(result.code, result.out + result.err).toBe(2);
    expect(result.out + result.err).toMatch(/ERROR bitmap 0 /);
  });

  it('an entry past the count the header gives is reported, and its table is not freed as a leak by a repair', async () => {
    const { image, extension } = await withBitmaps('uncounted.qcow2', true);
    poke(image, extension, [0, 0, 0, 1]);
    expect((await qemuCheck(image)).code).not.toBe(0);
    const before = await runCli('check', '--output=json', image);
    const report = JSON.parse(before.out) as { leaks?: number; corruptions?: number };
    expect(report.corruptions).toBeGreaterThan(0);
    expect(report.leaks ?? 0).toBe(0);
    const hashBefore = hash(image);
    await runCli('check', '-r', 'leaks', image);
    expect(hash(image)).toBe(hashBefore);
  });
});

describe('a bitmaps extension that names no bitmaps', () => {
  it('is corruption for check (QEMU refuses the image), and a repair frees none of the directory and tables', async () => {
    const dir = tempDir();
    try {
      const image = path.join(dir.path, 'zero-bitmaps.qcow2');
      await qemuImg(['create', '-q', '-f', 'qcow2', image, '16M']);
      await qemuImg(['bitmap', '--add', image, 'b0']);
      await qemuIo(image, ['write -P 0x12 0 64k']);
      const bytes = fs.readFileSync(image);
      let at = bytes.readUInt32BE(100);
      while (bytes.readUInt32BE(at) !== 0x23852875) at += 8 + Math.ceil(bytes.readUInt32BE(at + 4) / 8) * 8;
      bytes.writeUInt32BE(0, at + 8);
      fs.writeFileSync(image, bytes);
      expect((await qemuCheck(image)).code).not.toBe(0);
      const check = await runCli('check', '--output=json', image);
      expect((JSON.parse(check.out) as { leaks?: number }).leaks ?? 0).toBe(0);
      expect(check.code).toBe(2);
      const before = hash(image);
      await runCli('check', '-r', 'leaks', image);
      expect(hash(image)).toBe(before);
    } finally {
      dir.cleanup();
    }
  });
});
