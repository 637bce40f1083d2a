/** The chain jobs as the worker runs them, on chains made by qemu-img: their schemas, their paths, and what they leave. */
import * as fs from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { requireJobPaths } from '../../src/main/request-paths.ts';
import { jobTable } from '../../src/main/worker/job-table.ts';
import { jobSchemas } from '../../src/shared/ipc/contract.ts';
import type { JobEnd } from '../../src/shared/ipc/contract.ts';
import { silentJob } from '../../src/shared/qcow2/job-context.ts';
import { rewriteImage } from '../../src/shared/qcow2/rewrite/rewrite.ts';
import { rawOfEncrypted, secret } from '../helpers/encrypted-images.ts';
import { fileHash } from '../helpers/image-locks.ts';
import { startBackend } from '../helpers/job-harness.ts';
import { firstDifference, qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, runTool, tempDir, type TempDir } from '../helpers/qemu.ts';

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
  it('schemas: commit takes keepOverlay, the backing file shown and a passphrase; rebase an absolute backing file, a format, unsafe and a passphrase', () => {
    expect(jobSchemas['chain.commit'].args.safeParse({ keepOverlay: true }).success).toBe(true);
    expect(jobSchemas['chain.commit'].args.safeParse({ keepOverlay: true, backingFile: '/disks/base.qcow2', passphrase: 'moo' }).success).toBe(true);
    expect(jobSchemas['chain.commit'].args.safeParse({ passphrase: '' }).success).toBe(false);
    expect(jobSchemas['chain.rebase'].args.safeParse({ passphrase: 'moo' }).success).toBe(true);
    expect(jobSchemas['chain.rebase'].args.safeParse({ passphrase: 'a\0b' }).success).toBe(false);
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

describe('chain jobs on an encrypted chain, through the queue and the pool', () => {
  const PASS = 'moo-chain-job-pass';

  /** base.qcow2 (LUKS under PASS, data) ← top.qcow2 (plain, data), as the dialogs meet it. */
  async function encryptedBase(): Promise<{ base: string; top: string }> {
    const plain = folder.file('plain-base.qcow2');
    const base = folder.file('base.qcow2');
    const top = folder.file('top.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', plain, '1M']);
    await qemuIo(plain, ['write -P 0x11 0 512k']);
    rewriteImage({ source: plain, target: base, compression: 'keep', encryption: { kind: 'luks', passphrase: PASS, iterations: 1000, digestIterations: 1000 } });
    await qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', top]);
    await runTool('qemu-io', [...secret('sec0', PASS), '--image-opts', '-c', 'write -P 0x22 64k 64k', `driver=qcow2,file.filename=${top},backing.encrypt.key-secret=sec0`]);
    return { base, top };
  }

  it('without the passphrase LOCKED and nothing written; with it, commit into the encrypted file and a rebase that copies it into the overlay', async () => {
    const backend = startBackend({ maxThreads: 1 });
    try {
      const { base, top } = await encryptedBase();
      const hashes = [fileHash(base), fileHash(top)];
      const end = async (kind: string, args: unknown): Promise<JobEnd> => backend.ended(await backend.start(kind, top, args));
      for (const [kind, args] of [['chain.commit', { backingFile: base }], ['chain.rebase', {}]] as const) {
        expect(await end(kind, args), kind).toMatchObject({ ok: false, error: { code: 'LOCKED' } });
      }
      expect([fileHash(base), fileHash(top)]).toEqual(hashes);
      const wrong = await end('chain.commit', { passphrase: 'not-the-passphrase' });
      expect(wrong).toMatchObject({ ok: false, error: { code: 'BAD_PASSPHRASE' } });
      expect(JSON.stringify(wrong)).not.toContain('not-the-passphrase');
      expect([fileHash(base), fileHash(top)]).toEqual(hashes);

      const overlayBefore = new Uint8Array(512 * 1024);
      overlayBefore.fill(0x11);
      overlayBefore.fill(0x22, 64 * 1024, 128 * 1024);
      expect(await end('chain.commit', { backingFile: base, keepOverlay: true, passphrase: PASS })).toMatchObject({ ok: true, result: { base, committedBytes: 64 * 1024, emptied: false } });
      expect(firstDifference((await rawOfEncrypted(base, PASS)).subarray(0, 512 * 1024), overlayBefore)).toBe(-1);
      expect(await end('chain.rebase', { passphrase: PASS })).toMatchObject({ ok: true, result: { copiedBytes: 448 * 1024 } });
      expect((await qemuInfo(top))['backing-filename']).toBeUndefined();
      expect(firstDifference((await rawOf(top)).subarray(0, 512 * 1024), overlayBefore)).toBe(-1);
      expect((await qemuCheck(top)).code).toBe(0);
    } finally {
      await backend.close();
    }
  });
});
