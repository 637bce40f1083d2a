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
});
