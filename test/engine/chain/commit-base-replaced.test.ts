/**
 * A commit whose backing file is moved or replaced while it writes (another copy put in its
 * place): the data went into a file the chain no longer reads. Was: the overlay was then emptied
 * and the command said "Image committed." — the data lost (qemu-img commit 7.2 does the same).
 * Found by the concurrency audit.
 */
import * as fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { commitSteps } from '../../../src/shared/qcow2/chain/commit.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { runSteps } from '../../../src/shared/qcow2/steps.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { onceMidway } from '../../helpers/midway.ts';
import { qemuCheck, qemuImg, qemuIo, qemuMap, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

describe('commit into a backing file replaced meanwhile', { timeout: 30_000 }, () => {
  it.each([
    ['replaced by a copy of itself', (base: string) => {
      fs.copyFileSync(base, `${base}.copy`);
      fs.renameSync(`${base}.copy`, base);
    }, () => {}],
    // Moved back afterwards, for qemu-img to read the overlay through it.
    ['moved away', (base: string) => fs.renameSync(base, `${base}.moved`), (base: string) => fs.renameSync(`${base}.moved`, base)],
  ])('%s: refused (IN_USE) before the overlay is emptied; the overlay keeps its data, clean', async (_what, act, undo) => {
    const base = folder.file('base.qcow2');
    const top = folder.file('top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '64M']);
    await qemuIo(base, ['write -P 0x11 0 64M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 0x5a 1M 4M', 'write -P 0x5b 40M 8M', 'write -P 0x5c 60M 4M']);
    const topHash = fileHash(top);
    const topBefore = await rawOf(top);
    let baseAfterAct = '';
    let error: unknown = null;
    try {
      runSteps(
        commitSteps(
          { image: top },
          onceMidway('commit', () => {
            act(base);
            baseAfterAct = fs.existsSync(base) ? fileHash(base) : 'none';
          }),
        ),
      );
    } catch (caught) {
      error = caught;
    }
    // The file now at the name was not written by the commit.
    expect(fs.existsSync(base) ? fileHash(base) : 'none').toBe(baseAfterAct);
    undo(base);
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).code).toBe('IN_USE');
    expect((error as Qcow2Error).message).toMatch(/was moved or replaced while the commit wrote into it; the overlay was left as it was/);
    expect(fileHash(top)).toBe(topHash);
    expect((await qemuMap(top)).filter((entry) => entry.depth === 0).length).toBeGreaterThan(0);
    expect((await qemuCheck(top)).code).toBe(0);
    expect(Buffer.from(await rawOf(top)).equals(Buffer.from(topBefore))).toBe(true);
  });
});

describe('commit into the backing file the caller showed', { timeout: 30_000 }, () => {
  it('refuses, writing nothing anywhere, where the overlay was rebased onto another file since (audit K: the app committed into a file its dialog never named)', async () => {
    const base = folder.file('base.qcow2');
    const other = folder.file('other.qcow2');
    const top = folder.file('top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '16M']);
    await qemuIo(base, ['write -P 0x11 0 16M']);
    fs.copyFileSync(base, other);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 0x5a 1M 1M']);
    // Another program points the overlay at the copy while the dialog shows base.qcow2.
    await qemuImg(['rebase', '-u', '-b', 'other.qcow2', '-F', 'qcow2', top]);
    const hashes = [base, other, top].map(fileHash);
    let error: unknown = null;
    try {
      runSteps(commitSteps({ image: top, expectedBacking: base }));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(Qcow2Error);
    expect((error as Qcow2Error).message).toMatch(/reads through .*other\.qcow2 now, not .*base\.qcow2 as it did when the commit was asked for .*nothing was committed/);
    expect([base, other, top].map(fileHash)).toEqual(hashes);
    // Named as it is, the same commit goes ahead, into the file named.
    expect(runSteps(commitSteps({ image: top, expectedBacking: other })).base).toBe(other);
    expect([base].map(fileHash)).toEqual(hashes.slice(0, 1));
    await qemuImg(['check', '-q', other]);
  });
});
