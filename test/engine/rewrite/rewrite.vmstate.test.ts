/**
 * Snapshots with a VM's saved state (taken by QEMU's own `savevm`) and extra data another program
 * wrote survive compress and compact: QEMU restores each state with `loadvm`, the VM state bytes
 * are the same, and the foreign extra data is kept byte for byte.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { view } from '../../../src/shared/qcow2/format/bytes.ts';
import { parseHeader } from '../../../src/shared/qcow2/format/header.ts';
import { parseSnapshotTable, serializeSnapshotTable, snapshotTableLength } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { firstDifference, qemuImg, qemuInfo, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { loadVm, saveVm } from '../../helpers/qemu-system.ts';
import { expectCheckClean } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const FOREIGN = new TextEncoder().encode('FOREIGN!');

/** Appends 8 bytes no program but "another" knows to snapshot `name`'s extra data (in the table's own clusters). */
function addForeignExtraData(image: string, name: string): void {
  const bytes = new Uint8Array(fs.readFileSync(image));
  const header = parseHeader(bytes.subarray(0, 65536), bytes.length);
  const table = bytes.subarray(header.snapshotsOffset);
  const entries = parseSnapshotTable(table, header.snapshotCount, header.version);
  const oldLength = snapshotTableLength(table, header.snapshotCount);
  const changed = entries.map((entry) => {
    if (entry.name !== name) return entry;
    const extra = new Uint8Array(entry.extraData.length + FOREIGN.length);
    extra.set(entry.extraData);
    extra.set(FOREIGN, entry.extraData.length);
    return { ...entry, extraData: extra };
  });
  const serialized = serializeSnapshotTable(changed);
  const room = Math.ceil(oldLength / 65536) * 65536;
  if (serialized.length > room) throw new Error('the table grew past its clusters');
  const file = fs.openSync(image, 'r+');
  try {
    fs.writeSync(file, serialized, 0, serialized.length, header.snapshotsOffset);
  } finally {
    fs.closeSync(file);
  }
}

/** Each snapshot's VM state bytes, read through its own L1 table past the end of the disk, where QEMU keeps them. */
function vmStates(image: string): Map<string, Uint8Array> {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    const states = new Map<string, Uint8Array>();
    const span = opened.l2Entries * opened.clusterBytes;
    const vmStateOffset = Math.ceil(opened.virtualSize / span) * span;
    for (const snapshot of opened.snapshots) {
      const size = Number(snapshot.vmStateSizeLarge ?? BigInt(snapshot.vmStateSize32));
      const bytes = new Uint8Array(size);
      opened.readThrough(opened.loadSnapshotL1(snapshot), bytes, vmStateOffset, Number.MAX_SAFE_INTEGER);
      states.set(snapshot.name, bytes);
    }
    return states;
  } finally {
    opened.close();
  }
}

function extraData(image: string, name: string): Uint8Array {
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    const entry = opened.snapshots.find((snapshot) => snapshot.name === name);
    return entry?.extraData ?? new Uint8Array(0);
  } finally {
    opened.close();
  }
}

describe('VM state and foreign extra data through a rewrite', () => {
  it.each([
    ['compat 1.1', '1.1'],
    ['compat 0.10', '0.10'],
  ])('%s: every saved VM loads again after compress and after compact', async (_label, compat) => {
    const image = folder.file(`vm-${compat}.qcow2`);
    await qemuImg(['create', '-f', 'qcow2', '-o', `compat=${compat}`, image, '64M']);
    await qemuIo(image, ['write -P 0x31 0 3M']);
    await saveVm(image, 'booted');
    await qemuIo(image, ['write -P 0x32 1M 2M']);
    await qemuImg(['snapshot', '-c', 'disk-only', image]);
    await saveVm(image, 'later');
    addForeignExtraData(image, 'disk-only');
    await expectCheckClean(expect, image, 'before');
    const before = await qemuInfo(image);
    expect(before.snapshots?.find((snapshot) => snapshot.name === 'booted')?.['vm-state-size']).toBeGreaterThan(0);
    const states = vmStates(image);
    const foreign = extraData(image, 'disk-only');

    for (const compression of ['compress', 'keep'] as const) {
      const output = folder.file(`vm-${compat}-${compression}.qcow2`);
      rewriteImage({ source: image, target: output, compression });
      await expectCheckClean(expect, output, compression);
      expect((await qemuInfo(output)).snapshots, `${compression}: the snapshot list`).toEqual(before.snapshots);
      for (const [name, state] of vmStates(output)) {
        expect(firstDifference(state, states.get(name) ?? new Uint8Array(0)), `${compression}: ${name}'s VM state`).toBe(-1);
      }
      expect(extraData(output, 'disk-only'), `${compression}: foreign extra data`).toEqual(foreign);
      for (const name of ['booted', 'later']) {
        const loaded = await loadVm(output, name);
        expect(loaded.ok, `${compression}: loadvm ${name}\n${loaded.output}`).toBe(true);
      }
    }
    // The foreign bytes really are in the table (the helper did what it says).
    expect(view(foreign).getUint32(foreign.length - 8)).toBe(view(FOREIGN).getUint32(0));
  }, 120_000);
});
