/**
 * What a snapshot entry carries besides its L1 table — VM state size, VM clock, icount, date, and
 * extra data Cowbell does not understand — is kept byte for byte by Cowbell's operations on the
 * other snapshots. qemu-img cannot save VM state offline, so the entries are made by qemu-img and
 * then given those fields by rewriting the snapshot table in place (QEMU accepts the result).
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { parseHeader } from '../../../src/shared/qcow2/format/header.ts';
import { parseSnapshotTable, serializeSnapshotTable, snapshotTableLength } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import { MiB } from '../../helpers/image-matrix.ts';
import { qemuImg, qemuInfo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { rawSnapshotEntries, SnapshotScenario } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const UNKNOWN_EXTRA = Uint8Array.from({ length: 16 }, (_, index) => 0xa0 + index);
const FIVE_GIB = 5n * 1024n * 1024n * 1024n;

/** Gives "vm small" a VM state, clock and icount, and "vm large" a 5 GiB VM state plus 16 bytes of unknown extra data. */
function patchSnapshotTable(image: string): void {
  const bytes = new Uint8Array(fs.readFileSync(image));
  const header = parseHeader(bytes.subarray(0, 1024 * 1024), bytes.length);
  const clusterBytes = 2 ** header.clusterBits;
  const tableBytes = bytes.subarray(header.snapshotsOffset);
  const oldLength = snapshotTableLength(tableBytes, header.snapshotCount);
  const entries = parseSnapshotTable(tableBytes, header.snapshotCount, header.version).map((entry) => {
    if (entry.name === 'vm small') {
      return { ...entry, vmStateSize32: 3_000_000, vmStateSizeLarge: 3_000_000n, vmClockNsec: 12_345_678_901_234n, icount: 987_654_321n };
    }
    if (entry.name === 'vm large') {
      const extraData = new Uint8Array(entry.extraData.length + UNKNOWN_EXTRA.length);
      extraData.set(entry.extraData);
      extraData.set(UNKNOWN_EXTRA, entry.extraData.length);
      // QEMU writes 0 in the 32-bit field when the size does not fit it (older readers see a disk-only snapshot).
      return { ...entry, vmStateSize32: 0, vmStateSizeLarge: FIVE_GIB, vmClockNsec: 86_400_000_000_001n, icount: 42n, extraData };
    }
    return entry;
  });
  const table = serializeSnapshotTable(entries);
  // The rewritten table must stay inside the clusters the old one was given.
  if (Math.ceil(table.length / clusterBytes) > Math.ceil(oldLength / clusterBytes)) throw new Error('the patched snapshot table outgrew its clusters');
  const fd = fs.openSync(image, 'r+');
  try {
    fs.writeSync(fd, table, 0, table.length, header.snapshotsOffset);
  } finally {
    fs.closeSync(fd);
  }
}

describe('snapshot entries with VM state and unknown extra data', { timeout: 60_000 }, () => {
  it('Cowbell\'s create, rename, apply and delete of other snapshots keep those entries byte for byte', async ({ expect }) => {
    const image = folder.file('vm-state.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=65536', image, String(4 * MiB)]);
    const scenario = new SnapshotScenario({ image, initial: new Uint8Array(4 * MiB), clusterSize: 65536, version: 3, hasBacking: false, seed: 7 });
    await scenario.qemuWrite();
    await scenario.qemuCreate('vm small');
    await scenario.qemuWrite();
    await scenario.qemuCreate('vm large');
    await scenario.qemuWrite();
    patchSnapshotTable(image);

    // QEMU reads the patched fields back, so the entries are valid ones.
    const info = await qemuInfo(image);
    const small = info.snapshots?.find((snapshot) => snapshot.name === 'vm small');
    const large = info.snapshots?.find((snapshot) => snapshot.name === 'vm large');
    expect(small).toMatchObject({ 'vm-state-size': 3_000_000, 'vm-clock-sec': 12_345, 'vm-clock-nsec': 678_901_234, icount: 987_654_321 });
    expect(large).toMatchObject({ 'vm-state-size': Number(FIVE_GIB), 'vm-clock-sec': 86_400, 'vm-clock-nsec': 1, icount: 42 });
    await scenario.verify(expect, 'after patching');
    const kept = rawSnapshotEntries(image);
    const smallId = small?.id ?? '';
    const largeId = large?.id ?? '';
    const expectKept = async (label: string, ids = [smallId, largeId]): Promise<void> => {
      await scenario.verify(expect, label);
      const now = rawSnapshotEntries(image);
      for (const id of ids) expect(now.get(id), `${label}: snapshot ${id}'s entry`).toEqual(kept.get(id));
    };

    scenario.cowbellCreate('c1');
    await expectKept('Cowbell creates c1');
    scenario.engineWrite();
    scenario.cowbellCreate('c2');
    await expectKept('Cowbell creates c2');
    scenario.cowbellRename('c1', 'c1 renamed');
    await expectKept('Cowbell renames c1');
    scenario.cowbellApply('c1 renamed');
    await expectKept('Cowbell applies c1');
    scenario.engineWrite();
    scenario.cowbellDelete('c2');
    await expectKept('Cowbell deletes c2');
    await scenario.qemuCreate('q');
    await scenario.qemuDelete('q');
    await expectKept('qemu-img creates and deletes q');
    // Applying the entry with unknown extra data leaves it as it was too: Cowbell's record does not fit beside foreign bytes.
    scenario.cowbellApply('vm large');
    await expectKept('Cowbell applies "vm large" itself');

    // Applying "vm small" itself adds Cowbell's record after QEMU's 24 bytes of extra data; everything QEMU defines stays.
    scenario.cowbellApply('vm small');
    await expectKept('Cowbell applies "vm small" itself', [largeId]);
    const before = kept.get(smallId) ?? new Uint8Array();
    const after = rawSnapshotEntries(image).get(smallId) ?? new Uint8Array();
    const extraBefore = new DataView(before.buffer, before.byteOffset).getUint32(36);
    expect(extraBefore).toBe(24);
    expect(after.subarray(0, 36), 'L1, sizes, date, VM clock, VM state size').toEqual(before.subarray(0, 36));
    expect(after.subarray(40, 64), 'QEMU\'s 24 bytes of extra data').toEqual(before.subarray(40, 64));
    const extraAfter = new DataView(after.buffer, after.byteOffset).getUint32(36);
    const idAndName = before.subarray(64, 64 + smallId.length + 'vm small'.length);
    expect(after.subarray(40 + extraAfter, 40 + extraAfter + idAndName.length), 'id and name').toEqual(idAndName);
  });
});
