/**
 * Issue 20 part 3: commit into a backing file smaller than the overlay grows it first, as qemu-img
 * 7.2 does (its mirror job truncates the target up before copying), and an emptied overlay's file
 * gives back the clusters left free at its end. Each case runs beside qemu-img's own commit on a
 * copy of the same chain: every file clean, the overlay reading as before, each file reading and
 * sized as qemu-img leaves it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from '../../helpers/cli.ts';
import { fileHash } from '../../helpers/image-locks.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, type TempDir } from '../../helpers/qemu.ts';
import { copyFolder, expectSameBytes, guestOf, MiB, uncleanFiles, useTwoFolders } from './chain-fixtures.ts';

let ours: TempDir;
let theirs: TempDir;
useTwoFolders((folders) => ({ ours, theirs } = folders));

async function create(file: string, size: number, options: { format?: 'qcow2' | 'raw'; qcow2Options?: string; backing?: string; backingFormat?: 'qcow2' | 'raw' } = {}): Promise<void> {
  const args = ['create', '-q', '-f', options.format ?? 'qcow2'];
  if (options.qcow2Options !== undefined) args.push('-o', options.qcow2Options);
  if (options.backing !== undefined) args.push('-b', options.backing, '-F', options.backingFormat ?? 'qcow2');
  await qemuImg([...args, file, String(size)]);
}

async function sizeOf(file: string): Promise<number> {
  return (await qemuInfo(file, { format: file.endsWith('.raw') ? 'raw' : 'qcow2' }))['virtual-size'];
}

/** Runs `cowbell commit ARGS… top` here and `qemu-img commit ARGS… top` on the copy; both must succeed. */
async function commitBoth(args: string[], top: string): Promise<void> {
  const ours = await run('commit', '-q', ...args, top);
  expect(ours.err).toBe('');
  expect(ours.code).toBe(0);
  await qemuImg(['commit', '-q', ...args.map((arg) => (arg.startsWith('/') ? theirs.file(path.basename(arg)) : arg)), theirs.file(path.basename(top))]);
}

describe('commit into a backing file smaller than the overlay', () => {
  it('a v3 base grows first, hiding its own larger backing file past its old end, and reads as after qemu-img commit', async () => {
    // bottom (4 MiB, data past 2 MiB) ← base (2 MiB + 512 bytes: a part cluster) ← top (4 MiB).
    const bottom = ours.file('bottom.qcow2');
    const base = ours.file('base.qcow2');
    const top = ours.file('top.qcow2');
    const options = 'compat=1.1,cluster_size=4096';
    await create(bottom, 4 * MiB, { qcow2Options: options });
    await qemuIo(bottom, ['write -P 0x51 0 4M']);
    await create(base, 2 * MiB + 512, { qcow2Options: options, backing: 'bottom.qcow2' });
    await qemuIo(base, ['write -P 0x61 1M 1M', 'write -P 0x62 2M 512']);
    await create(top, 4 * MiB, { qcow2Options: options, backing: 'base.qcow2' });
    await qemuIo(top, ['write -P 0x71 100k 300k', 'write -P 0x72 2M 256k', 'write -P 0x73 3M 100k', 'write -z 3500k 64k']);
    copyFolder(ours, theirs);
    const model = await guestOf(top);
    await commitBoth([], top);
    expect(await uncleanFiles([bottom, base, top])).toEqual([]);
    expect(await sizeOf(base)).toBe(4 * MiB);
    expect(await sizeOf(theirs.file('base.qcow2'))).toBe(4 * MiB);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    expectSameBytes(await guestOf(base), model, 'the grown base');
    expectSameBytes(await guestOf(base), await guestOf(theirs.file('base.qcow2')), 'the base beside qemu-img commit');
  });

  it('a base whose old end cuts a cluster it has no table for still hides its larger backing file there', async () => {
    // bottom (16 MiB of 0x09) ← base (8 MiB + 1536 bytes, nothing of its own) ← top (12 MiB).
    const bottom = ours.file('bottom.qcow2');
    const base = ours.file('base.qcow2');
    const top = ours.file('top.qcow2');
    await create(bottom, 16 * MiB);
    await qemuIo(bottom, ['write -P 0x09 0 16M']);
    await create(base, 8 * MiB + 1536, { backing: 'bottom.qcow2' });
    await create(top, 12 * MiB, { backing: 'base.qcow2' });
    await qemuIo(top, ['write -P 0x03 10M 1M']);
    copyFolder(ours, theirs);
    const model = await guestOf(top);
    await commitBoth([], top);
    expect(await uncleanFiles([bottom, base, top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    expectSameBytes(await guestOf(base), await guestOf(theirs.file('base.qcow2')), 'the base beside qemu-img commit');
  });

  it('a raw base grows (zeros past its old end) and reads as after qemu-img commit', async () => {
    const base = ours.file('base.raw');
    const top = ours.file('top.qcow2');
    await create(base, 3 * MiB, { format: 'raw' });
    await qemuIo(base, ['write -P 0x11 0 3M'], { format: 'raw' });
    await create(top, 8 * MiB, { qcow2Options: 'compat=1.1', backing: 'base.raw', backingFormat: 'raw' });
    await qemuIo(top, ['write -P 0x21 2M 2M', 'write -P 0x22 6M 64k']);
    copyFolder(ours, theirs);
    const model = await guestOf(top);
    await commitBoth([], top);
    expect(await uncleanFiles([top])).toEqual([]);
    expect(fs.statSync(base).size).toBe(8 * MiB);
    expect(fs.statSync(theirs.file('base.raw')).size).toBe(8 * MiB);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    expectSameBytes(await guestOf(base), model, 'the grown raw base');
    expectSameBytes(await guestOf(base), await guestOf(theirs.file('base.raw')), 'the base beside qemu-img commit');
  });

  it('commit -b into a smaller file further down grows it and leaves the files above as they were', async () => {
    const base = ours.file('base.qcow2');
    const mid = ours.file('mid.qcow2');
    const top = ours.file('top.qcow2');
    await create(base, 1 * MiB, { qcow2Options: 'compat=1.1' });
    await qemuIo(base, ['write -P 0x11 0 1M']);
    await create(mid, 3 * MiB, { qcow2Options: 'compat=1.1', backing: 'base.qcow2' });
    await qemuIo(mid, ['write -P 0x21 512k 1M']);
    await create(top, 5 * MiB, { qcow2Options: 'compat=1.1', backing: 'mid.qcow2' });
    await qemuIo(top, ['write -P 0x31 4M 512k']);
    copyFolder(ours, theirs);
    const model = await guestOf(top);
    const above = [mid, top].map(fileHash);
    await commitBoth(['-b', base], top);
    expect(await uncleanFiles([base, mid, top])).toEqual([]);
    expect([mid, top].map(fileHash)).toEqual(above);
    expect(await sizeOf(base)).toBe(5 * MiB);
    expectSameBytes(await guestOf(base), model, 'the grown base');
    expectSameBytes(await guestOf(base), await guestOf(theirs.file('base.qcow2')), 'the base beside qemu-img commit -b');
  });

  it('a v2 base with snapshots cannot grow (its snapshots have no size of their own): refused, every file unchanged, as qemu-img refuses', async () => {
    const base = ours.file('base.qcow2');
    const top = ours.file('top.qcow2');
    await create(base, 2 * MiB, { qcow2Options: 'compat=0.10' });
    await qemuIo(base, ['write -P 0x11 0 1M']);
    await qemuImg(['snapshot', '-c', 'kept', base]);
    await create(top, 4 * MiB, { qcow2Options: 'compat=0.10', backing: 'base.qcow2' });
    await qemuIo(top, ['write -P 0x21 3M 64k']);
    copyFolder(ours, theirs);
    const before = [base, top].map(fileHash);
    const result = await run('commit', top);
    expect(result.code).toBe(1);
    expect(result.err).toMatch(/v2.*snapshots/);
    expect([base, top].map(fileHash)).toEqual(before);
    const theirResult = await qemuImg(['commit', '-q', theirs.file('top.qcow2')], { okCodes: [0, 1] });
    expect(theirResult.code).toBe(1);
    expect(await sizeOf(theirs.file('base.qcow2'))).toBe(2 * MiB);
  });
});

describe('the emptied overlay', () => {
  it('gives back the clusters left free at the end of its file, as qemu-img commit does; with -d it keeps its length', async () => {
    const base = ours.file('base.qcow2');
    const top = ours.file('top.qcow2');
    await create(base, 8 * MiB, { qcow2Options: 'compat=1.1' });
    await qemuIo(base, ['write -P 0x11 0 2M']);
    await create(top, 8 * MiB, { qcow2Options: 'compat=1.1', backing: 'base.qcow2' });
    await qemuIo(top, ['write -P 0x21 1M 3M', 'write -P 0x22 7M 1M']);
    copyFolder(ours, theirs);
    const model = await guestOf(top);
    const lengthBefore = fs.statSync(top).size;
    expect((await run('commit', '-q', '-d', top)).code).toBe(0);
    expect(fs.statSync(top).size).toBe(lengthBefore);
    await commitBoth([], top);
    expect(await uncleanFiles([base, top])).toEqual([]);
    expectSameBytes(await guestOf(top), model, 'the overlay after commit');
    const check = await qemuCheck(top);
    const length = fs.statSync(top).size;
    // Nothing in use past the end, and the 4 MiB of data it held gone from the file.
    expect(length).toBe(check.report?.['image-end-offset']);
    expect(length).toBeLessThan(lengthBefore - 4 * MiB + 64 * 1024);
    expect(length).toBeGreaterThanOrEqual(fs.statSync(theirs.file('top.qcow2')).size);
  });
});
