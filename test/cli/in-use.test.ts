import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';
import { holdWithQemuIo, holdWithQemuNbd } from '../helpers/image-locks.ts';
import { qemuCompare, qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const IN_USE = /being written by another program \(a running VM or qemu-nbd\).*-U/;

describe('reading a disk another program writes (as qemu-img: refused unless -U)', { timeout: 60_000 }, () => {
  it('convert, map, check, snapshot list, usage and diff refuse it in one line, exit 1, no output; with -U they read it; info describes it with a note', async () => {
    const image = folder.file('busy.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
    await qemuIo(image, ['write -P 5 0 1M']);
    await qemuImg(['snapshot', '-c', 'S', image]);
    const holder = await holdWithQemuNbd(image, { socketDir: folder.path });
    try {
      const target = folder.file('copy.raw');
      const reads = [['map', image], ['check', image], ['snapshot', 'list', image], ['usage', image], ['diff', image, 'S', 'current']];
      for (const argv of [['convert', image, target], ...reads]) {
        const result = await run(...argv);
        expect({ argv, code: result.code, out: result.out }).toEqual({ argv, code: 1, out: '' });
        expect(result.err).toMatch(IN_USE);
        expect(result.err.trimEnd().split('\n')).toHaveLength(1);
      }
      expect(fs.readdirSync(folder.path).filter((name) => name.includes('copy'))).toEqual([]);
      expect((await run('convert', '-U', image, target)).code).toBe(0);
      const info = await run('info', image);
      expect(info.code).toBe(0);
      expect(info.out).toContain('Note: read-only: in use by another program');
      expect((await run('info', '-U', '--json', image)).code).toBe(0);
      for (const argv of reads) {
        const [command = '', ...rest] = argv;
        const forced = await run(command, '-U', ...rest);
        expect({ argv, code: forced.code, err: forced.err }).toEqual({ argv, code: 0, err: '' });
      }
    } finally {
      await holder.release();
    }
    expect((await qemuCompare(image, folder.file('copy.raw'))).code).toBe(0);
  });

  it('an output backing file another program writes is refused too; a reader (qemu-io -r) is no obstacle', async () => {
    const base = folder.file('base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '8M']);
    const source = folder.file('source.raw');
    fs.writeFileSync(source, Buffer.alloc(8 * 1024 * 1024, 1));
    const writer = await holdWithQemuNbd(base, { socketDir: folder.path });
    try {
      const result = await run('convert', '-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2', source, folder.file('over-busy.qcow2'));
      expect(result.code).toBe(1);
      expect(result.err).toMatch(IN_USE);
    } finally {
      await writer.release();
    }
    const reader = await holdWithQemuIo(base, ['-r']);
    try {
      expect((await run('convert', '-O', 'qcow2', '-B', 'base.qcow2', '-F', 'qcow2', source, folder.file('over-read.qcow2'))).code).toBe(0);
      expect((await run('info', base)).code).toBe(0);
    } finally {
      await reader.release();
    }
  });
});
