import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../helpers/cli.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** base.qcow2 (snapshot "golden") <- mid.qcow2 <- top.qcow2, each with data of its own. */
async function chain(name: string): Promise<{ base: string; mid: string; top: string }> {
  fs.mkdirSync(folder.file(name));
  const base = folder.file(`${name}/base.qcow2`);
  const mid = folder.file(`${name}/mid.qcow2`);
  const top = folder.file(`${name}/top.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '8M']);
  await qemuIo(base, ['write -P 1 0 1M']);
  await qemuImg(['snapshot', '-c', 'golden', base]);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', mid]);
  await qemuIo(mid, ['write -P 2 1M 1M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', top]);
  await qemuIo(top, ['write -P 3 2M 1M']);
  return { base, mid, top };
}

function unchanged(files: string[]): () => void {
  const before = files.map((file) => fs.readFileSync(file));
  return () => files.forEach((file, index) => expect(fs.readFileSync(file).equals(before[index] ?? Buffer.alloc(0)), file).toBe(true));
}

describe('an output that is the input, or a file the input reads through, is refused even with --force (qemu-img: a lock conflict)', () => {
  it('convert to the input itself: raw, qcow2 keeping snapshots, one snapshot\'s state', async () => {
    const { base } = await chain('self');
    const expectUnchanged = unchanged([base]);
    for (const args of [['-O', 'raw'], ['-O', 'qcow2'], ['-O', 'qcow2', '-l', 'golden'], ['-O', 'qcow2', '--no-snapshots']]) {
      const result = await run('convert', '--force', ...args, base, base);
      expect(result.code, args.join(' ')).toBe(1);
      expect(result.err).toMatch(/is the disk being converted/);
      expectUnchanged();
    }
  });

  it('convert and compact onto a backing file, or one below it', async () => {
    const { base, mid, top } = await chain('below');
    const expectUnchanged = unchanged([base, mid, top]);
    for (const [command, target, extra] of [
      ['convert', mid, ['-O', 'qcow2']],
      ['convert', base, ['-O', 'raw']],
      ['convert', base, ['-O', 'qcow2']],
      ['compact', base, []],
    ] as const) {
      const result = await run(command, '--force', ...extra, top, target);
      expect(result.code, `${command} ${target}`).toBe(1);
      expect(result.err).toMatch(/reads through/);
      expectUnchanged();
    }
  });

  it('create -b X X, and create over a file below the new backing file', async () => {
    const { base, mid } = await chain('create');
    const expectUnchanged = unchanged([base, mid]);
    for (const [backing, target] of [
      ['mid.qcow2', mid],
      ['mid.qcow2', base],
    ] as const) {
      const result = await run('create', '--force', '-q', '-f', 'qcow2', '-b', backing, '-F', 'qcow2', target);
      expect(result.code, `${backing} ${target}`).toBe(1);
      expect(result.err).toMatch(/reads through|backing file of the new image/);
      expectUnchanged();
    }
  });
});
