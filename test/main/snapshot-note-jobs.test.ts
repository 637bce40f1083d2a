/**
 * Snapshot notes through main as the renderer reaches it (request `job.start`, the real worker,
 * the engine): main refuses a note the engine could not keep before any job runs, and the notes
 * it accepts are on the disk as qemu-img and the tree then see it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobEnd } from '../../src/shared/ipc/contract.ts';
import type { SnapshotTree } from '../../src/shared/qcow2/model.ts';
import { startBackend, type Backend } from '../helpers/job-harness.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../helpers/qemu.ts';
import { expectCheckClean, fileHash } from '../helpers/snapshot-scenario.ts';

let folder: TempDir;
let backend: Backend;
beforeAll(() => {
  folder = tempDir();
  backend = startBackend({ maxThreads: 1 });
});
afterAll(async () => {
  await backend.close();
  folder.cleanup();
});

async function run(kind: string, path: string, args: unknown): Promise<JobEnd> {
  return backend.ended(await backend.start(kind, path, args));
}

async function treeOf(path: string): Promise<SnapshotTree> {
  const end = await run('snapshot.tree', path, {});
  if (!end.ok) throw new Error(`snapshot.tree failed: ${end.error.code}`);
  return end.result as SnapshotTree;
}

describe('snapshot.note and snapshot.create with a note', { timeout: 60_000 }, () => {
  it('set on create, changed and cleared through jobs; qemu-img check clean after', async () => {
    const path = folder.file('noted.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '8M']);
    await qemuIo(path, ['write -P 7 0 256k']);
    expect(await run('snapshot.create', path, { name: 'one', note: 'Vor dem Update ✓' })).toMatchObject({ ok: true, result: { id: '1', name: 'one' } });
    expect((await treeOf(path)).snapshots.map((node) => node.note)).toEqual(['Vor dem Update ✓']);
    expect(await run('snapshot.note', path, { name: 'one', note: 'é'.repeat(256) })).toMatchObject({ ok: true, result: null });
    expect((await treeOf(path)).snapshots.map((node) => node.note)).toEqual(['é'.repeat(256)]);
    expect(await run('snapshot.note', path, { name: 'one', note: '' })).toMatchObject({ ok: true, result: null });
    expect((await treeOf(path)).snapshots.map((node) => node.note)).toEqual([undefined]);
    await expectCheckClean(expect, path, 'after the note jobs');
  });

  it.each([
    ['257 two-byte characters (514 bytes, fewer than 512 characters)', 'snapshot.note', { name: 'one', note: 'é'.repeat(257) }],
    ['513 characters', 'snapshot.note', { name: 'one', note: 'x'.repeat(513) }],
    ['a NUL', 'snapshot.note', { name: 'one', note: 'a\0b' }],
    ['no note at all', 'snapshot.note', { name: 'one' }],
    ['a note that is not a string', 'snapshot.note', { name: 'one', note: 42 }],
    ['an extra key', 'snapshot.note', { name: 'one', note: 'x', append: true }],
    ['a too long note on create', 'snapshot.create', { name: 'two', note: '🚀'.repeat(129) }],
  ])('refuses %s with INVALID_REQUEST before any job, the file unchanged', async (_what, kind, args) => {
    const path = folder.file(`refused-${kind}.qcow2`);
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '1M']);
    await qemuImg(['snapshot', '-c', 'one', path]);
    const hash = fileHash(path);
    const runsBefore = backend.pool.log.length;
    const reply = await backend.handle('job.start', { kind, path, args });
    expect(reply).toMatchObject({ ok: false, error: { code: 'INVALID_REQUEST' } });
    expect(backend.pool.log.length).toBe(runsBefore);
    expect(fileHash(path)).toBe(hash);
  });

  it("passes the engine's code through for a snapshot that is not there", async () => {
    const path = folder.file('missing-snapshot.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '1M']);
    expect(await run('snapshot.note', path, { name: 'nope', note: 'x' })).toMatchObject({ ok: false, error: { code: 'SNAPSHOT_NOT_FOUND' } });
  });
});
