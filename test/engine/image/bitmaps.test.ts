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
