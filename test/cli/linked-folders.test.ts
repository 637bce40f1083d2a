import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeBytesFor } from '../../src/shared/qcow2/io/free-space.ts';
import { run } from '../helpers/cli.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const MiB = 1024 * 1024;

/**
 * real/vms/ov.qcow2 names its backing file ../base/b.qcow2, and is opened as link/ov.qcow2 where
 * link leads to real/vms: the kernel (and QEMU, which joins the names as strings) goes up from
 * real/vms to real/base/b.qcow2 — not to base/b.qcow2 beside link, a decoy with other data.
 */
async function linkedChain(name: string): Promise<{ overlay: string; base: string; decoy: string }> {
  const root = folder.file(name);
  for (const sub of ['real/vms', 'real/base', 'base']) fs.mkdirSync(`${root}/${sub}`, { recursive: true });
  const base = `${root}/real/base/b.qcow2`;
  const decoy = `${root}/base/b.qcow2`;
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '8M']);
  await qemuIo(base, ['write -P 0x11 0 1M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', decoy, '16M']);
  await qemuIo(decoy, ['write -P 0xee 0 1M']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', '../base/b.qcow2', '-F', 'qcow2', `${root}/real/vms/ov.qcow2`]);
  fs.symlinkSync('real/vms', `${root}/link`);
  const overlay = `${root}/link/ov.qcow2`;
  await qemuIo(overlay, ['write -P 0x42 2M 1M']);
  return { overlay, base, decoy };
}

async function readsPattern(image: string, pattern: number, offset: string, length: string): Promise<boolean> {
  return (await qemuIo(image, [`read -P ${pattern} ${offset} ${length}`])).includes('Pattern verification failed') === false;
}

describe('a backing name with .. opened through a linked folder (resolved by the kernel, as QEMU does)', () => {
  it('info, convert and commit reach the backing file QEMU reaches; the decoy is untouched', async () => {
    const { overlay, base, decoy } = await linkedChain('commit');
    const decoyBefore = fs.readFileSync(decoy);
    const info = await run('info', '--output=json', overlay);
    expect(info.code, info.err).toBe(0);
    expect((JSON.parse(info.out) as { 'virtual-size': number })['virtual-size']).toBe(8 * MiB);
    const raw = folder.file('commit.raw');
    expect((await run('convert', '-O', 'raw', overlay, raw)).code).toBe(0);
    expect(fs.readFileSync(raw).subarray(0, 4)).toEqual(Buffer.from([0x11, 0x11, 0x11, 0x11]));
    const commit = await run('commit', overlay);
    expect(commit.code, commit.err).toBe(0);
    expect(await readsPattern(base, 0x42, '2M', '1M')).toBe(true);
    expect(await readsPattern(overlay, 0x42, '2M', '1M')).toBe(true);
    expect(fs.readFileSync(decoy).equals(decoyBefore)).toBe(true);
    expect((await qemuCheck(base)).code).toBe(0);
  });

  it('a copy in another folder names the same backing file; a new overlay takes its size', async () => {
    const { overlay } = await linkedChain('rewrite');
    fs.mkdirSync(folder.file('rewrite/out'));
    const copy = folder.file('rewrite/out/c.qcow2');
    const compact = await run('compact', overlay, copy);
    expect(compact.code, compact.err).toBe(0);
    expect(await readsPattern(copy, 0x11, '0', '1M')).toBe(true);
    expect(await readsPattern(copy, 0x42, '2M', '1M')).toBe(true);
    // A backing name through a link the user keeps (base.qcow2 -> base-v1.qcow2) stays that name, not its target.
    const versions = folder.file('rewrite/versions');
    fs.mkdirSync(versions);
    await qemuImg(['create', '-q', '-f', 'qcow2', `${versions}/base-v1.qcow2`, '4M']);
    fs.symlinkSync('base-v1.qcow2', `${versions}/base.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', `${versions}/vm.qcow2`]);
    const kept = folder.file('rewrite/out/kept.qcow2');
    expect((await run('compact', `${versions}/vm.qcow2`, kept)).code).toBe(0);
    expect((await qemuInfo(kept))['backing-filename']).toBe('../versions/base.qcow2');
    const clone = folder.file('rewrite/link/clone.qcow2');
    const create = await run('create', '-q', '-f', 'qcow2', '-b', '../base/b.qcow2', '-F', 'qcow2', clone);
    expect(create.code, create.err).toBe(0);
    expect((await qemuInfo(clone))['virtual-size']).toBe(8 * MiB);
  });

  it('the free space beside a new file is asked of the folder the kernel reaches (the app\'s Compact dialog said there was no such folder)', () => {
    const root = folder.file('free-space');
    for (const sub of ['real/sub', 'real/base']) fs.mkdirSync(`${root}/${sub}`, { recursive: true });
    fs.symlinkSync('real/sub', `${root}/link`);
    // As text, root/base, which does not exist; as the kernel goes, root/real/base.
    expect(freeBytesFor(`${root}/link/../base/new.qcow2`)).toBeGreaterThan(0);
  });
});
