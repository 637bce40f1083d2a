/**
 * "Save what can be read…" as the page asks for it: the contract's arguments, then the real request
 * handle, job manager, queue, worker pool and engine on a disk qemu-img made and a test damaged.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobSchemas, type JobEnd, type RescueReport } from '../../src/shared/ipc/contract.ts';
import { fileHash } from '../helpers/image-locks.ts';
import { startBackend, type Backend } from '../helpers/job-harness.ts';
import { layout, readU64, writeU64 } from '../helpers/qcow2-poke.ts';
import { qemuCheck, qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

const MiB = 1024 * 1024;

let folder: TempDir;
let backend: Backend;
let counter = 0;
beforeAll(() => {
  folder = tempDir();
  backend = startBackend({ maxThreads: 2 });
});
afterAll(async () => {
  await backend.close();
  folder.cleanup();
});

/** 8 MiB, 4 KiB clusters (four L2 tables), data in each table's range; L1 entry 1 points one sector past its table. */
async function damagedDisk(): Promise<string> {
  const path = folder.file(`damaged-${counter++}.qcow2`);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '8M']);
  await qemuIo(path, ['write -P 0x11 0 1M', 'write -P 0x22 2M 1M', 'write -P 0x33 4M 1M', 'write -P 0x44 6M 1M']);
  const at = layout(path).l1Offset + 8;
  writeU64(path, at, readU64(path, at) + 0x200n);
  return path;
}

function resultOf<T>(end: JobEnd): T {
  if (!end.ok) throw new Error(`the job failed: ${end.error.code} ${end.error.message}`);
  return end.result as T;
}

describe('the contract for image.rescue', () => {
  it('accepts what the dialog sends and refuses anything else', () => {
    const schema = jobSchemas['image.rescue'];
    expect(schema.access).toBe('read');
    for (const args of [
      { target: '/vms/saved.qcow2', format: 'qcow2' },
      { target: '/vms/saved.img', format: 'raw', snapshot: 'before upgrade' },
      { target: '/vms/saved.img', format: 'raw', snapshot: 'dup', snapshotId: '2' },
      { target: '/vms/saved.img', format: 'raw', passphrase: 'moo' },
    ]) {
      expect(schema.args.safeParse(args).success).toBe(true);
    }
    for (const args of [
      { target: 'relative.qcow2', format: 'qcow2' },
      { target: '/vms/saved.vmdk', format: 'vmdk' },
      { format: 'qcow2' },
      { target: '/vms/saved.qcow2', format: 'qcow2', overwrite: true },
      { target: '/vms/saved.qcow2', format: 'qcow2', snapshot: '' },
    ]) {
      expect(schema.args.safeParse(args).success).toBe(false);
    }
  });
});

describe('image.rescue', () => {
  it('copies what can be read into a clean qcow2, reports the broken range, and leaves the disk as it was', async () => {
    const path = await damagedDisk();
    const hashBefore = fileHash(path);
    const target = folder.file(`rescued-${counter++}.qcow2`);
    const jobId = await backend.start('image.rescue', path, { target, format: 'qcow2' });
    const report = resultOf<RescueReport>(await backend.ended(jobId));
    expect(report).toEqual({
      target,
      format: 'qcow2',
      virtualSize: 8 * MiB,
      fileBytes: fs.statSync(target).size,
      unreadableBytes: 2 * MiB,
      unreadableRangeCount: 1,
      unreadable: [{ start: 2 * MiB, length: 2 * MiB, reason: 'L2_UNALIGNED', detail: expect.stringMatching(/L1 entry 1/) as string }],
    });
    expect(fileHash(path)).toBe(hashBefore);
    expect((await qemuCheck(target)).code).toBe(0);
    const raw = folder.file(`rescued-${counter++}.raw`);
    await qemuImg(['convert', '-O', 'raw', target, raw]);
    const bytes = fs.readFileSync(raw);
    expect(bytes.subarray(0, MiB).every((byte) => byte === 0x11)).toBe(true);
    expect(bytes.subarray(2 * MiB, 4 * MiB).every((byte) => byte === 0)).toBe(true);
    expect(bytes.subarray(6 * MiB, 7 * MiB).every((byte) => byte === 0x44)).toBe(true);
    const progress = backend.events.filter((entry) => entry.event === 'job.progress' && (entry.payload as { jobId: string }).jobId === jobId);
    expect(progress.length).toBeGreaterThan(0);
  }, 60_000);

  it('saves the snapshot the dialog chose by id where two share its name, and a disk cut short before its snapshot table', async () => {
    const path = folder.file(`named-alike-${counter++}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', path, '4M']);
    await qemuIo(path, ['write -P 0x11 0 1M']);
    await qemuImg(['snapshot', '-c', 'dup', path]);
    await qemuIo(path, ['write -P 0x22 0 1M']);
    await qemuImg(['snapshot', '-c', 'dup', path]);
    const second = folder.file(`second-dup-${counter++}.img`);
    resultOf<RescueReport>(await backend.ended(await backend.start('image.rescue', path, { target: second, format: 'raw', snapshot: 'dup', snapshotId: '2' })));
    expect(fs.readFileSync(second).subarray(0, MiB).every((byte) => byte === 0x22)).toBe(true);

    // The snapshot table was written last: cut there, the current state is all still there (qemu-img reads it too).
    await qemuIo(path, ['write -P 0x33 0 64k']);
    await qemuImg(['snapshot', '-c', 'last', path]);
    fs.truncateSync(path, Number(readU64(path, 64)));
    const current = folder.file(`cut-short-${counter++}.img`);
    const report = resultOf<RescueReport>(await backend.ended(await backend.start('image.rescue', path, { target: current, format: 'raw' })));
    expect(report.unreadableBytes).toBe(0);
    const bytes = fs.readFileSync(current);
    expect(bytes.subarray(0, 64 * 1024).every((byte) => byte === 0x33)).toBe(true);
    expect(bytes.subarray(64 * 1024, MiB).every((byte) => byte === 0x22)).toBe(true);
  }, 60_000);

  it('refuses an existing target before any job, and writes nothing', async () => {
    const path = await damagedDisk();
    const existing = folder.file(`exists-${counter++}.img`);
    fs.writeFileSync(existing, 'mine');
    const refused = await backend.handle('job.start', { kind: 'image.rescue', path, args: { target: existing, format: 'raw' } });
    expect(refused).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(fs.readFileSync(existing, 'utf8')).toBe('mine');
  }, 60_000);

  it('a cancelled rescue leaves no file', async () => {
    const path = await damagedDisk();
    const target = folder.file(`cancelled-${counter++}.img`);
    let release = (): void => {};
    backend.pool.beforeRun = (kind) => (kind === 'image.rescue' ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve());
    const jobId = await backend.start('image.rescue', path, { target, format: 'raw' });
    await expect.poll(() => backend.pool.log.some((entry) => entry.kind === 'image.rescue' && entry.type === 'start')).toBe(true);
    expect(await backend.handle('job.cancel', { jobId })).toEqual({ ok: true, value: { cancelled: true } });
    release();
    backend.pool.beforeRun = undefined;
    const end = await backend.ended(jobId);
    expect(end).toMatchObject({ ok: false, error: { code: 'CANCELLED' } });
    expect(fs.existsSync(target)).toBe(false);
  }, 60_000);
});
