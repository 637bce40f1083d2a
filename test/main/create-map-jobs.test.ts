import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobTable } from '../../src/main/worker/job-table.ts';
import { jobSchemas } from '../../src/shared/ipc/contract.ts';
import { silentJob } from '../../src/shared/qcow2/job-context.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('image.create job', () => {
  const schema = jobSchemas['image.create'].args;

  it('accepts valid create options and refuses invalid ones', () => {
    expect(schema.safeParse({ size: 1048576, clusterSize: 4096, compat: '1.1', refcountBits: 64, extendedL2: false, compressionType: 'zstd' }).success).toBe(true);
    expect(schema.safeParse({ backingFile: '/images/base.qcow2', backingFormat: 'qcow2' }).success).toBe(true);
    for (const bad of [
      {},
      { size: 0 },
      { size: 1.5 },
      { size: 1024, clusterSize: 3000 },
      { size: 1024, clusterSize: 256 },
      { size: 1024, clusterSize: 4 * 1024 * 1024 },
      { size: 1024, refcountBits: 3 },
      { size: 1024, compat: '2.0' },
      { size: 1024, backingFile: 'relative.qcow2' },
      { size: 1024, preallocation: 'full' },
      { size: 1024, unknown: true },
    ]) {
      expect(schema.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
    expect(jobSchemas['image.create'].access).toBe('write');
  });

  it('creates the image and answers with its info', async () => {
    const image = folder.file('job-created.qcow2');
    const info = await jobTable['image.create'](image, { size: 4 * 1048576, clusterSize: 16384, extendedL2: true }, silentJob);
    expect(info['virtual-size']).toBe(4 * 1048576);
    expect(info['cluster-size']).toBe(16384);
    expect((await qemuInfo(image))['format-specific']?.data['extended-l2']).toBe(true);
    expect((await qemuCheck(image)).code).toBe(0);
  });

  it('records the backing file\'s format it is given (a request without one is refused: the format is not guessed) and refuses an existing file', async () => {
    const base = folder.file('job-base.raw');
    fs.writeFileSync(base, Buffer.alloc(65536, 1));
    const overlay = folder.file('job-overlay.qcow2');
    const schema = jobSchemas['image.create'].args;
    expect(schema.safeParse({ backingFile: base }).success).toBe(false);
    expect(schema.safeParse({ backingFile: base, backingFormat: 'raw' }).success).toBe(true);
    expect(jobSchemas['chain.rebase'].args.safeParse({ backingFile: base }).success).toBe(false);
    expect(jobSchemas['chain.rebase'].args.safeParse({ backingFile: base, backingFormat: 'raw' }).success).toBe(true);
    expect(jobSchemas['chain.rebase'].args.safeParse({}).success).toBe(true);
    const info = await jobTable['image.create'](overlay, { backingFile: base, backingFormat: 'raw' }, silentJob);
    expect(info['backing-filename-format']).toBe('raw');
    expect(info['virtual-size']).toBe(65536);
    await expect(Promise.resolve().then(() => jobTable['image.create'](overlay, { size: 1024 }, silentJob))).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('image.map job', () => {
  it('validates its arguments and maps a snapshot or the current state', async () => {
    const schema = jobSchemas['image.map'].args;
    expect(schema.safeParse({ cells: 256 }).success).toBe(true);
    expect(schema.safeParse({ cells: 256, snapshot: 'before' }).success).toBe(true);
    expect(schema.safeParse({ cells: 0 }).success).toBe(false);
    expect(schema.safeParse({ cells: 65537 }).success).toBe(false);
    expect(schema.safeParse({ cells: 4, extra: 1 }).success).toBe(false);

    const image = folder.file('job-mapped.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '1M']);
    await qemuImg(['snapshot', '-c', 'empty', image]);
    await qemuIo(image, ['write -P 5 0 128k']);
    const current = await jobTable['image.map'](image, { cells: 16 }, silentJob);
    const snapshot = await jobTable['image.map'](image, { cells: 16, snapshot: 'empty' }, silentJob);
    expect(current.cellCount).toBe(16);
    expect(current.data.reduce((sum, value) => sum + value, 0)).toBe(131072);
    expect(snapshot.unallocated.reduce((sum, value) => sum + value, 0)).toBe(1048576);
  });
});
