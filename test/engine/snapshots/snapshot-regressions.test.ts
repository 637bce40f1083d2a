/**
 * Regression tests for snapshot engine bugs found while testing issue 4, one block per fix.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { removeSnapshot, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
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
