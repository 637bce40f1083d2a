/**
 * Two snapshots with one id (QEMU keeps ids unique; nothing in the file does, and qemu-img check
 * passes such a table). The app tells snapshots apart by id, so its tree showed one, its card the
 * other, and Delete removed a snapshot the tree never showed (found by an audit). Every lookup by
 * that id is refused now, nothing changed; by name each can still be reached.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseHeader } from '../../../src/shared/qcow2/format/header.ts';
import { parseSnapshotTable, serializeSnapshotTable, snapshotTableLength } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import { removeSnapshot, revertToSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { run } from '../../helpers/cli.ts';
import { qemuCheck, qemuImg, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { fileHash } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Gives snapshot `name` the id `id` (of the same length: the table keeps its size). */
function patchId(image: string, name: string, id: string): void {
  const bytes = new Uint8Array(fs.readFileSync(image));
  const header = parseHeader(bytes.subarray(0, 65536), bytes.length);
  const table = bytes.subarray(header.snapshotsOffset);
  const entries = parseSnapshotTable(table, header.snapshotCount, header.version);
  const length = snapshotTableLength(table, header.snapshotCount);
  const serialized = serializeSnapshotTable(entries.map((entry) => (entry.name === name ? { ...entry, id } : entry)));
  expect(serialized.length).toBe(length);
  const file = fs.openSync(image, 'r+');
  try {
    fs.writeSync(file, serialized, 0, serialized.length, header.snapshotsOffset);
  } finally {
    fs.closeSync(file);
  }
}

describe('two snapshots with one id', () => {
  it('any change by that id (alone, or with a name as the app sends it) is refused, naming both; by name it works', async () => {
    const image = folder.file('twins.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    await qemuIo(image, ['write -P 0x11 0 64k']);
    await qemuImg(['snapshot', '-c', 'keep', image]);
    await qemuIo(image, ['write -P 0x22 0 64k']);
    await qemuImg(['snapshot', '-c', 'other', image]);
    patchId(image, 'other', '1');
    expect((await qemuCheck(image)).code).toBe(0);
    const before = fileHash(image);
    for (const ref of ['1', { id: '1' }, { id: '1', name: 'keep' }, { id: '1', name: 'other' }]) {
      expect(() => removeSnapshot(image, ref), JSON.stringify(ref)).toThrow(/2 snapshots have the id "1" \("keep", "other"\)/);
      expect(() => revertToSnapshot(image, ref), JSON.stringify(ref)).toThrow(/2 snapshots have the id "1"/);
    }
    expect(fileHash(image)).toBe(before);
    // convert -l by a name that is unique: taken by its name, as qemu-img takes it (it was refused for the shared id).
    const copy = await run('convert', '-l', 'other', '-O', 'raw', image, folder.file('other.raw'));
    expect(copy.code, copy.err).toBe(0);
    expect((await rawOf(folder.file('other.raw'), { format: 'raw' }))[0]).toBe(0x22);
    expect(removeSnapshot(image, { name: 'other' })).toMatchObject({ name: 'other' });
    expect((await qemuImg(['snapshot', '-l', image])).stdout).toMatch(/\bkeep\b/);
  });
});
