/**
 * The last step of a commit, cutting the emptied overlay's free end, comes after everything is
 * done and durable. Was: an I/O error there failed the whole command ("input/output error … check
 * the disk") though both files were finished and clean.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { defaultOpenFile } from '../../../src/shared/qcow2/image/image.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { nodeStyleError } from '../../helpers/failing-file.ts';
import { qemuCheck, qemuImg, qemuIo, qemuMap, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { wrapFile } from '../../helpers/wrapped-file.ts';

let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

describe('commit whose final cut of the overlay fails', { timeout: 30_000 }, () => {
  it('still succeeds: the data in the backing file, the overlay emptied and clean, only longer', async () => {
    const base = folder.file('base.qcow2');
    const top = folder.file('top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 0x5a 1M 4M', 'write -P 0x5b 40M 1M']);
    const before = await rawOf(top);
    let truncates = 0;
    const openFile = (filePath: string, readOnly: boolean): BlockFile => {
      const file = defaultOpenFile(filePath, readOnly);
      if (filePath !== top) return file;
      return wrapFile(file, {
        truncate: () => {
          truncates++;
          throw nodeStyleError('EIO', 'ftruncate');
        },
      });
    };
    const result = runSteps(commitSteps({ image: top, openFile }));
    expect(truncates).toBe(1);
    expect(result.emptied).toBe(true);
    expect((await qemuMap(top)).filter((entry) => entry.depth === 0)).toEqual([]);
    for (const file of [base, top]) expect((await qemuCheck(file)).code, file).toBe(0);
    expect(Buffer.from(await rawOf(top)).equals(Buffer.from(before))).toBe(true);
    expect(Buffer.from(await rawOf(base)).equals(Buffer.from(before))).toBe(true);
  });
});
