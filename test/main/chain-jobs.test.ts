/** The chain jobs as the worker runs them, on chains made by qemu-img: their schemas, their paths, and what they leave. */
import * as fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { requireJobPaths } from '../../src/main/request-paths.ts';
import { jobTable } from '../../src/main/worker/job-table.ts';
import { jobSchemas } from '../../src/shared/ipc/contract.ts';
import { silentJob } from '../../src/shared/qcow2/job-context.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeEach(() => {
  folder = tempDir();
});
afterEach(() => folder.cleanup());

async function chain(): Promise<{ base: string; top: string }> {
  const base = folder.file('base.qcow2');
  const top = folder.file('top.qcow2');
  await qemuImg(['create', '-q', '-f', 'qcow2', base, '1M']);
  await qemuIo(base, ['write -P 0x11 0 512k']);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
  await qemuIo(top, ['write -P 0x22 64k 64k']);
  return { base, top };
}

describe('chain jobs', () => {
  it('schemas: commit takes keepOverlay only; rebase an absolute backing file, a format and unsafe', () => {
    expect(jobSchemas['chain.commit'].args.safeParse({ keepOverlay: true }).success).toBe(true);
    expect(jobSchemas['chain.commit'].args.safeParse({ base: '/x' }).success).toBe(false);
    expect(jobSchemas['chain.rebase'].args.safeParse({ backingFile: '/disks/base.qcow2', backingFormat: 'qcow2', unsafe: true }).success).toBe(true);
    expect(jobSchemas['chain.rebase'].args.safeParse({}).success).toBe(true);
    expect(jobSchemas['chain.rebase'].args.safeParse({ backingFile: 'base.qcow2' }).success).toBe(false);
    expect(jobSchemas['chain.rebase'].args.safeParse({ backingFormat: 'vmdk' }).success).toBe(false);
    expect([jobSchemas['chain.read'].access, jobSchemas['chain.commit'].access, jobSchemas['chain.rebase'].access]).toEqual(['read', 'write', 'write']);
  });

  it('main refuses a rebase onto a backing file that does not exist, naming it', async () => {
    const { top } = await chain();
    await expect(requireJobPaths('chain.rebase', top, { backingFile: folder.file('nowhere.qcow2') })).rejects.toMatchObject({ code: 'BACKING_NOT_FOUND' });
    await expect(requireJobPaths('chain.rebase', top, {})).resolves.toBeUndefined();
  });

  it('chain.read, chain.commit and chain.rebase leave clean files that read as before', async () => {
    const { base, top } = await chain();
    const model = await rawOf(top);
    const read = await jobTable['chain.read'](top, {}, silentJob);
    expect(read.files.map((entry) => entry.name)).toEqual([top, 'base.qcow2']);
    const committed = await jobTable['chain.commit'](top, {}, silentJob);
    expect(committed).toEqual({ base, committedBytes: 64 * 1024, grownFrom: null, emptied: true });
    const rebased = await jobTable['chain.rebase'](top, {}, silentJob);
    expect(rebased.copiedBytes).toBe(512 * 1024);
    expect((await qemuInfo(top))['backing-filename']).toBeUndefined();
    for (const file of [base, top]) expect((await qemuCheck(file)).code).toBe(0);
    expect(firstDifference(await rawOf(top), model)).toBe(-1);
  });

  it('chain.commit gives the emptied overlay\'s space back (4 KiB clusters: refcount blocks through the file kept it)', async () => {
    const base = folder.file('small-base.qcow2');
    const top = folder.file('small-top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', base, '32M']);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', '-b', 'small-base.qcow2', '-F', 'qcow2', top]);
    await qemuIo(top, ['write -P 0x33 1M 24M']);
    const model = await rawOf(top);
    const committed = await jobTable['chain.commit'](top, {}, silentJob);
    expect(committed).toEqual({ base, committedBytes: 24 * 1024 * 1024, grownFrom: null, emptied: true });
    expect(fs.statSync(top).size).toBeLessThan(256 * 1024);
    expect((await qemuInfo(top))['backing-filename']).toBe('small-base.qcow2');
    for (const file of [base, top]) expect((await qemuCheck(file)).code).toBe(0);
    expect(firstDifference(await rawOf(top), model)).toBe(-1);
  });
});
