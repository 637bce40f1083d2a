/**
 * Compressed data packed into a host cluster shares its refcount. Packed up to the largest count
 * the refcount width holds (255 with refcount_bits=8), no snapshot of the compressed disk could be
 * reverted to or taken any more: both add references before the old ones go. Packing stops at half
 * the width's count, so a compressed disk keeps its snapshots usable by qemu-img and Cowbell alike.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { run } from '../../helpers/cli.ts';
import { qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectCheckClean } from '../../helpers/snapshot-scenario.ts';

const MiB = 1024 * 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('compress with narrow refcounts', () => {
  it.each([2, 4, 8])('refcount_bits=%i: every snapshot can still be reverted to, by qemu-img and by Cowbell, and another taken', async (bits) => {
    const image = folder.file(`narrow-${bits}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `refcount_bits=${bits}`, image, String(64 * MiB)]);
    // One pattern over 32 MiB: each 64 KiB cluster compresses to a few dozen bytes, hundreds to a host cluster.
    await qemuIo(image, ['write -P 7 0 32M']);
    await qemuImg(['snapshot', '-c', 'n1', image]);
    await qemuIo(image, ['write -P 8 0 1M']);
    const snapshotBytes = await rawOf(image, { snapshot: 'n1' });
    expect((await run('compress', image)).code).toBe(0);
    await expectCheckClean(expect, image, 'after compress');

    const byQemu = folder.file(`narrow-${bits}-qemu.qcow2`);
    fs.copyFileSync(image, byQemu);
    await qemuImg(['snapshot', '-a', 'n1', byQemu]);
    await expectCheckClean(expect, byQemu, 'after qemu-img snapshot -a');
    expect(Buffer.compare(Buffer.from(await rawOf(byQemu)), Buffer.from(snapshotBytes))).toBe(0);

    expect(await run('snapshot', 'apply', image, 'n1')).toMatchObject({ code: 0, err: '' });
    expect(await run('snapshot', 'create', image, 'n2')).toMatchObject({ code: 0, err: '' });
    await expectCheckClean(expect, image, 'after Cowbell reverts and takes another');
    expect(Buffer.compare(Buffer.from(await rawOf(image)), Buffer.from(snapshotBytes))).toBe(0);
  }, 60_000);
});
