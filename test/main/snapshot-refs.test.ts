/**
 * Two snapshots with one name (qemu-img snapshot -c takes a name twice, as a daily script does):
 * the app names the one the user chose by its id as well, and the job acts on that one; a request
 * by the name alone is refused as ambiguous, never resolved to the first of them.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { JobEnd } from '../../src/shared/ipc/contract.ts';
import { startBackend, type Backend } from '../helpers/job-harness.ts';
import { firstDifference, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../helpers/qemu.ts';
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

/** A disk whose snapshots 1 and 2 are both named "daily": 1 holds 0x11 at its start, 2 holds 0x22; the current state 0x33. */
async function twoDailies(name: string): Promise<string> {
  const path = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', path, '4M']);
  await qemuIo(path, ['write -P 0x11 0 64k']);
  await qemuImg(['snapshot', '-c', 'daily', path]);
  await qemuIo(path, ['write -P 0x22 0 64k']);
  await qemuImg(['snapshot', '-c', 'daily', path]);
  await qemuIo(path, ['write -P 0x33 0 64k']);
  return path;
}

async function snapshotIds(path: string): Promise<string[]> {
  const listing = (await qemuImg(['snapshot', '-l', path])).stdout;
  return [...listing.matchAll(/^(\d+)\s+daily\s/gm)].map((match) => match[1] ?? '');
}

describe('snapshots that share a name', { timeout: 60_000 }, () => {
  it('apply, delete, rename and note by name alone are refused, the file byte-identical', async () => {
    const path = await twoDailies('ambiguous.qcow2');
    const before = fileHash(path);
    for (const [kind, args] of [
      ['snapshot.apply', { name: 'daily' }],
      ['snapshot.delete', { name: 'daily' }],
      ['snapshot.rename', { name: 'daily', newName: 'weekly' }],
      ['snapshot.note', { name: 'daily', note: 'which one?' }],
    ] as const) {
      const end = await run(kind, path, args);
      expect(end, kind).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
      expect(end.ok ? '' : end.error.message).toMatch(/2 snapshots are named "daily" \(ids 1, 2\)/);
    }
    expect(fileHash(path)).toBe(before);
  });

  it('by id and name: apply reverts to the one chosen, delete removes the one chosen, export saves the one chosen', async () => {
    const path = await twoDailies('chosen.qcow2');
    expect(await run('snapshot.apply', path, { name: 'daily', id: '2' })).toMatchObject({ ok: true });
    expect((await rawOf(path))[0]).toBe(0x22);
    expect(await run('snapshot.apply', path, { name: 'daily', id: '1' })).toMatchObject({ ok: true });
    expect((await rawOf(path))[0]).toBe(0x11);

    const exported = folder.file('second-daily.raw');
    expect(await run('snapshot.export', path, { name: 'daily', id: '2', target: exported, format: 'raw' })).toMatchObject({ ok: true });
    const saved = new Uint8Array(fs.readFileSync(exported));
    const second = new Uint8Array(4 << 20);
    second.fill(0x22, 0, 64 << 10);
    expect(firstDifference(saved, second), 'the second daily, as saved').toBe(-1);

    expect(await run('snapshot.delete', path, { name: 'daily', id: '1' })).toMatchObject({ ok: true });
    expect(await snapshotIds(path)).toEqual(['2']);
    await expectCheckClean(expect, path, 'after the delete');
  });

  it('an id whose snapshot is no longer the one shown (another program deleted it, or renamed it) is SNAPSHOT_NOT_FOUND', async () => {
    const path = await twoDailies('changed.qcow2');
    // qemu-img deletes the first snapshot of that name: id 1.
    await qemuImg(['snapshot', '-d', 'daily', path]);
    expect(await snapshotIds(path)).toEqual(['2']);
    const before = fileHash(path);
    expect(await run('snapshot.delete', path, { name: 'daily', id: '1' })).toMatchObject({ ok: false, error: { code: 'SNAPSHOT_NOT_FOUND' } });
    expect(await run('snapshot.apply', path, { name: 'weekly', id: '2' })).toMatchObject({ ok: false, error: { code: 'SNAPSHOT_NOT_FOUND' } });
    expect(fileHash(path)).toBe(before);
  });

  it('with the time the tree showed: a snapshot deleted and made again under that name and id by another program is SNAPSHOT_NOT_FOUND for every change and the export', async () => {
    const path = folder.file('remade.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '4M']);
    await qemuIo(path, ['write -P 0x11 0 64k']);
    await qemuImg(['snapshot', '-c', 'b', path]);
    const tree = await run('snapshot.tree', path, {});
    const shown = tree.ok ? (tree.result as { snapshots: { id: string; name: string; date: string }[] }).snapshots[0] : undefined;
    expect(shown).toMatchObject({ id: '1', name: 'b' });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await qemuImg(['snapshot', '-d', 'b', path]);
    await qemuIo(path, ['write -P 0x99 0 64k']);
    await qemuImg(['snapshot', '-c', 'b', path]);
    const before = fileHash(path);
    const pinned = { name: 'b', id: '1', date: shown?.date };
    for (const [kind, args] of [
      ['snapshot.apply', pinned],
      ['snapshot.delete', pinned],
      ['snapshot.rename', { ...pinned, newName: 'c' }],
      ['snapshot.note', { ...pinned, note: 'which one?' }],
      ['snapshot.export', { ...pinned, target: folder.file('remade-export.raw'), format: 'raw' }],
      // What only reads a state (found by an audit: by id alone they read the snapshot made again —
      // a restore said "as it is in b" of a file from the other one).
      ['image.map', { snapshot: 'b', snapshotId: '1', snapshotDate: shown?.date, cells: 64 }],
      ['image.diff', { from: 'b', fromId: '1', fromDate: shown?.date, to: 'current' }],
      ['image.rescue', { snapshot: 'b', snapshotId: '1', snapshotDate: shown?.date, target: folder.file('remade-rescue.raw'), format: 'raw' }],
      ['files.list', { state: '1', stateDate: shown?.date, path: '/' }],
      ['files.diff', { from: '1', fromDate: shown?.date, to: 'current' }],
      ['files.copyOut', { state: '1', stateDate: shown?.date, path: '/etc', target: folder.file('remade-restore') }],
    ] as const) {
      expect(await run(kind, path, args), kind).toMatchObject({ ok: false, error: { code: 'SNAPSHOT_NOT_FOUND' } });
    }
    expect(fileHash(path)).toBe(before);
    for (const made of ['remade-export.raw', 'remade-rescue.raw', 'remade-restore']) expect(fs.existsSync(folder.file(made)), made).toBe(false);
    // The times as shown now read the snapshot made again.
    const now = await run('snapshot.tree', path, {});
    const remade = now.ok ? (now.result as { snapshots: { id: string; date: string }[] }).snapshots[0] : undefined;
    expect(remade?.date).not.toBe(shown?.date);
    expect(await run('image.diff', path, { from: 'b', fromId: '1', fromDate: remade?.date, to: 'current' })).toMatchObject({ ok: true });
  });

  it('the map and compare panes: by name alone refused, by id the chosen one', async () => {
    const path = folder.file('mapped.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '4M']);
    await qemuIo(path, ['write -P 0x11 0 64k']);
    await qemuImg(['snapshot', '-c', 'daily', path]);
    await qemuIo(path, ['write -P 0x22 1M 128k']);
    await qemuImg(['snapshot', '-c', 'daily', path]);
    const dataBytes = async (args: object): Promise<number> => {
      const end = await run('image.map', path, { cells: 16, ...args });
      if (!end.ok) throw new Error(`image.map failed: ${end.error.code}`);
      return (end.result as { data: number[] }).data.reduce((sum, bytes) => sum + bytes, 0);
    };
    expect(await dataBytes({ snapshot: 'daily', snapshotId: '1' })).toBe(64 << 10);
    expect(await dataBytes({ snapshot: 'daily', snapshotId: '2' })).toBe(192 << 10);
    expect(await run('image.map', path, { cells: 16, snapshot: 'daily' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
    expect(await run('image.diff', path, { from: 'daily', fromId: '1', to: 'daily', toId: '2' })).toMatchObject({ ok: true, result: { bytes: 128 << 10 } });
    expect(await run('image.diff', path, { from: 'daily', fromId: '2', to: 'current' })).toMatchObject({ ok: true, result: { bytes: 0 } });
    expect(await run('image.diff', path, { from: 'daily', to: 'current' })).toMatchObject({ ok: false, error: { code: 'INVALID_ARGUMENT' } });
  });
});

describe('revert with the figure the dialog showed', { timeout: 60_000 }, () => {
  it('is refused (UNSAVED_DATA, nothing changed) when another program wrote since; reverts with the figure as it is now', async () => {
    const path = folder.file('written-since.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '16M']);
    await qemuIo(path, ['write -P 0x11 0 1M']);
    await qemuImg(['snapshot', '-c', 's1', path]);
    const unsavedNow = async (): Promise<number> => {
      const tree = await run('snapshot.tree', path, {});
      return tree.ok ? (tree.result as { current: { exclusiveBytes: number } }).current.exclusiveBytes : Number.NaN;
    };
    const shown = await unsavedNow();
    const tree = await run('snapshot.tree', path, {});
    const s1 = tree.ok ? (tree.result as { snapshots: { id: string; name: string; date: string }[] }).snapshots[0] : undefined;
    // The guest writes 8 MiB after the dialog showed its figure.
    await qemuIo(path, ['write -P 0x22 1M 8M']);
    const before = fileHash(path);
    const refused = await run('snapshot.apply', path, { name: 's1', id: s1?.id, date: s1?.date, discardUpTo: shown });
    expect(refused).toMatchObject({ ok: false, error: { code: 'UNSAVED_DATA' } });
    expect(fileHash(path)).toBe(before);
    const now = await unsavedNow();
    expect(now).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    expect(await run('snapshot.apply', path, { name: 's1', id: s1?.id, date: s1?.date, discardUpTo: now })).toMatchObject({ ok: true });
    expect((await rawOf(path))[2 * 1024 * 1024]).toBe(0);
    await expectCheckClean(expect, path, 'after the revert');
  });
});
