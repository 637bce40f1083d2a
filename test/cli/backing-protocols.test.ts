/**
 * A backing file name QEMU reads as a protocol address (a ':' before any '/': `json:{…}`, `nbd://…`,
 * even `name:with-colon.qcow2`) is not a file's path. Cowbell said such a backing file "does not
 * exist" (or read a file of that name, which QEMU never would); it now says what the name is.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBackingChain } from '../../src/shared/qcow2/chain/chain.ts';
import { run } from '../helpers/cli.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('backing names QEMU reads as protocols', () => {
  it.each([
    ['json:{"driver":"qcow2","file":{"driver":"file","filename":"base.qcow2"}}', 'json:'],
    ['nbd://localhost:10809/disk', 'nbd:'],
    ['odd:name.qcow2', 'odd:'],
  ])('%s: info shows it; reading through it says what it is; the chain names it', async (name, protocol) => {
    const dir = fs.mkdtempSync(path.join(folder.path, 'protocol-'));
    const base = path.join(dir, 'base.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', base, '4M']);
    await qemuIo(base, ['write -P 0x33 0 64k']);
    // A file literally so named beside it: QEMU would not read it, nor may Cowbell.
    if (name === 'odd:name.qcow2') fs.copyFileSync(base, path.join(dir, name));
    const overlay = path.join(dir, 'overlay.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', name, '-F', 'qcow2', overlay, '4M']);

    const info = await run('info', overlay);
    expect(info.code, info.err).toBe(0);
    expect(info.out).toContain(`backing file: ${name}`);
    const read = await run('convert', '-O', 'raw', overlay, path.join(dir, 'out.raw'));
    expect(read.code).toBe(1);
    expect(read.err).toContain(`"${protocol}" address`);
    expect(read.err).not.toMatch(/does not exist/);
    expect(fs.existsSync(path.join(dir, 'out.raw'))).toBe(false);
    const chain = readBackingChain(overlay);
    expect(chain.complete).toBe(false);
    expect(chain.files.at(-1)?.problem).toMatchObject({ kind: 'unreadable', message: expect.stringContaining(`"${protocol}" address`) });
  });

  it('create -b refuses to name a backing file so (no program could open the overlay); ./NAME is a path', async () => {
    const dir = fs.mkdtempSync(path.join(folder.path, 'create-'));
    await qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'vm:1.qcow2'), '4M']);
    const refused = await run('create', '-b', 'vm:1.qcow2', '-F', 'qcow2', path.join(dir, 'clone.qcow2'));
    expect(refused.code).toBe(1);
    expect(refused.err).toContain('./vm:1.qcow2');
    expect(fs.existsSync(path.join(dir, 'clone.qcow2'))).toBe(false);
    expect((await run('create', '-b', './vm:1.qcow2', '-F', 'qcow2', path.join(dir, 'clone.qcow2'))).code).toBe(0);
    expect((await run('convert', '-O', 'raw', path.join(dir, 'clone.qcow2'), path.join(dir, 'clone.raw'))).code).toBe(0);
    // A safe rebase would have to read it: refused, the overlay as it was; -u writes the name, as qemu-img -u does.
    const rebased = await run('rebase', '-b', 'vm:1.qcow2', '-F', 'qcow2', path.join(dir, 'clone.qcow2'));
    expect(rebased.code).toBe(1);
    expect(rebased.err).toContain('"vm:" address');
    expect((await run('info', path.join(dir, 'clone.qcow2'))).out).toContain('backing file: ./vm:1.qcow2');
    expect((await run('rebase', '-u', '-b', 'json:{"driver":"qcow2","file":{"driver":"file","filename":"vm:1.qcow2"}}', '-F', 'qcow2', path.join(dir, 'clone.qcow2'))).code).toBe(0);
  });
});
