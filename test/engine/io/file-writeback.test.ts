/**
 * startWriteback on the command line's thread runs sync_file_range on libuv's thread pool and
 * nothing waits for it: the process must still end cleanly however it ends while calls are out.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir, type TempDir } from '../../helpers/qemu.ts';

const MiB = 1024 * 1024;
let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('startWriteback', () => {
  it('lets the process end at once, by exit, by an uncaught error or by itself, with calls still out', () => {
    const module = fileURLToPath(new URL('../../../src/shared/qcow2/io/file-writeback.ts', import.meta.url));
    const script = `
      const fs = await import('node:fs');
      const { startWriteback } = await import(${JSON.stringify(module)});
      const fd = fs.openSync(process.argv[1], 'w');
      const block = Buffer.alloc(${4 * MiB}, 7);
      for (let index = 0; index < 6; index++) {
        fs.writeSync(fd, block, 0, block.length, index * block.length);
        startWriteback(fd, 0, 0);
      }
      if (process.argv[2] === 'close') fs.closeSync(fd);
      if (process.argv[2] === 'exit') process.exit(0);
      if (process.argv[2] === 'throw') throw new Error('ended by an error');`;
    for (let round = 0; round < 8; round++) {
      for (const ending of ['exit', 'throw', 'close', 'by itself']) {
        const target = folder.file(`end-${round}-${ending.replace(' ', '-')}.bin`);
        const result = spawnSync(process.execPath, ['--input-type=module', '-e', script, target, ending], { encoding: 'utf8' });
        const expected = ending === 'throw' ? { status: 1, signal: null, stderrHas: true } : { status: 0, signal: null, stderrHas: false };
        expect({ round, ending, status: result.status, signal: result.signal, stderrHas: result.stderr.includes('ended by an error') }).toEqual({ round, ending, ...expected });
        expect(fs.statSync(target).size).toBe(24 * MiB);
      }
    }
  }, 120_000);
});
