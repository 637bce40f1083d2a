/**
 * Regression tests for snapshot engine bugs found while testing issue 4, one block per fix.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { lockTiming } from '../../../src/shared/qcow2/io/image-lock.ts';
import { changeSnapshotName, readSnapshotTree, removeSnapshot, revertToSnapshot, takeSnapshot, withImage } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { MiB } from '../../helpers/image-matrix.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectCheckClean, fileHash } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

// Was: the refcount overflow surfaced mid-change, leaving the image dirty (read-only to Cowbell until a repair) with a leaked L1 copy.
describe('1-bit refcounts', () => {
  it('a snapshot of an empty disk works; one of a disk with data is refused by both tools, and Cowbell leaves the file as it was', async ({ expect }) => {
    const image = folder.file('refcount1.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'refcount_bits=1,cluster_size=4096', image, String(1 * MiB)]);
    takeSnapshot(image, 'empty');
    await expectCheckClean(expect, image, 'after a snapshot of the empty disk');
    await qemuIo(image, ['write -P 9 0 64k']);
    const copy = `${image}.qemu`;
    fs.copyFileSync(image, copy);
    const qemu = await qemuImg(['snapshot', '-c', 'with data', copy], { okCodes: [0, 1] });
    expect(qemu.code).toBe(1);
    const before = fileHash(image);
    let caught: unknown = null;
    try {
      takeSnapshot(image, 'with data');
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(Qcow2Error);
    expect((caught as Qcow2Error).message).toMatch(/refcount/i);
    expect(fileHash(image)).toBe(before);
    await expectCheckClean(expect, image, 'after the refused snapshot');
    // The image is still Cowbell's to change: revert to the empty snapshot, then drop it.
    revertToSnapshot(image, 'empty');
    removeSnapshot(image, 'empty');
    await expectCheckClean(expect, image, 'after apply and delete');
  });
});

// Was: the name's length was checked only when the new table was written, after the change had begun:
// the refused snapshot left leaked clusters and the dirty bit (every later change refused until a repair).
describe('a snapshot name too long for the table', () => {
  it('create and rename refuse it with the file byte-identical; 65535 bytes is taken', async ({ expect }) => {
    const image = folder.file('long-name.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, String(4 * MiB)]);
    await qemuIo(image, ['write -P 1 0 64k']);
    takeSnapshot(image, 's');
    const before = fileHash(image);
    const tooLong = 'n'.repeat(65536);
    for (const attempt of [() => takeSnapshot(image, tooLong), () => changeSnapshotName(image, 's', tooLong), () => takeSnapshot(image, '\u00e9'.repeat(32768))]) {
      let caught: unknown = null;
      try {
        attempt();
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(Qcow2Error);
      expect((caught as Qcow2Error).code).toBe('INVALID_ARGUMENT');
      expect(fileHash(image)).toBe(before);
    }
    takeSnapshot(image, 'n'.repeat(65535));
    await expectCheckClean(expect, image, 'after the longest name');
    expect((await qemuImg(['snapshot', '-l', image])).stdout).toContain('n'.repeat(100));
  });
});

// Was: an operation that failed closed only the image file, so an external data file kept its lock:
// the CLI's next open in the same process (resize's preview) waited 5 s and said the disk was busy.
describe('a failed change of a disk with an external data file', () => {
  it('releases the data file: the refused shrink is followed at once by an open for writing', async ({ expect }) => {
    const image = folder.file('data-file.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `data_file=${folder.file('data-file.data')}`, image, String(6 * MiB)]);
    await qemuIo(image, [`write -P 1 ${5 * MiB} 4096`]);
    let caught: unknown = null;
    try {
      resizeImagePath(image, 4 * MiB, { shrink: true });
    } catch (error) {
      caught = error;
    }
    expect((caught as Qcow2Error).code).toBe('DATA_PAST_END');
    // No waiting for a lock to go: one this process still held would fail the open at once (IN_USE).
    const wait = lockTiming.busyWaitMs;
    lockTiming.busyWaitMs = 0;
    try {
      expect(() => withImage(image, 'write', () => undefined)).not.toThrow();
    } finally {
      lockTiming.busyWaitMs = wait;
    }
  });
});

// Was: the app sent the id and name it showed; a snapshot another program deleted and made again
// under the same name got the same id from QEMU, and the dialog reverted to or deleted that one.
describe('a snapshot made again by another program under the same name and id', () => {
  it('is not the one the app showed: revert, delete, rename and note given its time refuse, nothing written', async ({ expect }) => {
    const image = folder.file('remade.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '4M']);
    await qemuIo(image, ['write -P 1 0 64k']);
    await qemuImg(['snapshot', '-c', 'a', image]);
    await qemuIo(image, ['write -P 2 0 64k']);
    await qemuImg(['snapshot', '-c', 'b', image]);
    const shown = readSnapshotTree(image).snapshots.find((snapshot) => snapshot.name === 'b');
    expect(shown?.id).toBe('2');
    // A second later (the time is what tells them apart), another program makes "b" again.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    await qemuImg(['snapshot', '-d', 'b', image]);
    await qemuIo(image, ['write -P 9 0 64k']);
    await qemuImg(['snapshot', '-c', 'b', image]);
    const remade = readSnapshotTree(image).snapshots.find((snapshot) => snapshot.name === 'b');
    expect(remade?.id).toBe('2');
    expect(remade?.date).not.toBe(shown?.date);
    const hash = fileHash(image);
    const ref = { id: '2', name: 'b', date: shown?.date ?? '' };
    for (const act of [() => revertToSnapshot(image, ref), () => removeSnapshot(image, ref), () => changeSnapshotName(image, ref, 'c')]) {
      expect(act).toThrow(expect.objectContaining({ code: 'SNAPSHOT_NOT_FOUND', message: expect.stringMatching(/another program replaced it/) }));
    }
    expect(fileHash(image)).toBe(hash);
    // The one shown now, with its own time, goes ahead.
    removeSnapshot(image, { id: '2', name: 'b', date: remade?.date ?? '' });
    expect(readSnapshotTree(image).snapshots.map((snapshot) => snapshot.name)).toEqual(['a']);
    await expectCheckClean(expect, image, 'after the delete');
  });
});

// Was: a run of clusters longer than one refcount block describes (a 4 TiB disk's 16 MiB L1 with
// 4 KiB clusters) in space no block covered yet put a block at the start of each range it crossed,
// cutting the run, and looked again without end: the stack overflowed mid-change, leaving
// OFLAG_COPIED errors (snapshot create) or the dirty bit (resize, apply).
describe('a new L1 table longer than one refcount block describes', () => {
  it('snapshot create on a 4 TiB disk with 4 KiB clusters, a grow and an apply with 512-byte clusters: done, and qemu-img check is clean', async ({ expect }) => {
    const big = folder.file('big-l1.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', big, '4T']);
    await qemuIo(big, ['write -P 0x44 0 64k']);
    takeSnapshot(big, 's');
    await expectCheckClean(expect, big, 'after snapshot create');

    const grown = folder.file('grown-l1.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', grown, '1M']);
    await qemuIo(grown, ['write -P 0x55 0 64k']);
    resizeImagePath(grown, 1024 * MiB);
    await expectCheckClean(expect, grown, 'after the grow');

    const applied = folder.file('applied-l1.qcow2');
    // 256 MiB, not more, and qemu-img's flushes off: its own shrink of 1 GiB with 512-byte clusters takes 47 s here.
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', applied, '256M']);
    await qemuImg(['snapshot', '-c', 's1', applied]);
    await qemuImg(['resize', '-q', '--shrink', '--image-opts', `driver=qcow2,file.filename=${applied},cache.no-flush=on`, '1M']);
    revertToSnapshot(applied, 's1');
    await expectCheckClean(expect, applied, 'after the apply');
    expect((await qemuImg(['info', '--output=json', applied])).stdout).toMatch(/"virtual-size": 268435456/);
  }, 60_000);
});
