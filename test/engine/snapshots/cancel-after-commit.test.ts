/**
 * A cancel that arrives after an operation's commit point (the header write that switches the
 * active L1 or the snapshot table) cannot leave the image "as it was": the change is on disk.
 * The operation finishes instead — refcounts released, the dirty bit cleared — and reports success.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { JobContext } from '../../../src/shared/qcow2/job-context.ts';
import { readImageInfo } from '../../../src/shared/qcow2/image/info.ts';
import { removeSnapshot, revertToSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { resizeImagePath } from '../../../src/shared/qcow2/snapshots/resize.ts';
import { qemuCheck, qemuImg, qemuInfo, qemuIo, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** Asks to cancel from the moment the operation reports `stage` (as a user's click landing then would). */
function cancelFrom(stage: string): JobContext & { cancelled: boolean } {
  const context = {
    cancelled: false,
    progress(reported: string) {
      if (reported === stage) context.cancelled = true;
    },
    throwIfCancelled() {
      if (context.cancelled) throw new Qcow2Error('CANCELLED', 'Cancelled; the image was left as it was');
    },
  };
  return context;
}

async function imageWithTwoStates(name: string): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=512', image, '256k']);
  await qemuIo(image, ['write -P 0x31 0 64k']);
  await qemuImg(['snapshot', '-c', 'first', image]);
  await qemuIo(image, ['write -P 0x32 0 32k']);
  return image;
}

describe('a cancel after the commit point', () => {
  it('snapshot apply finishes: the snapshot data, a clean image, no dirty bit', async () => {
    const image = await imageWithTwoStates('apply.qcow2');
    const snapshotData = await rawOf(image, { snapshot: 'first' });
    const job = cancelFrom('releasing the old state');
    revertToSnapshot(image, 'first', job);
    expect(job.cancelled).toBe(true);
    expect(await rawOf(image)).toEqual(snapshotData);
    expect((await qemuCheck(image)).code).toBe(0);
    expect((await qemuInfo(image))['dirty-flag']).toBe(false);
    expect(readImageInfo(image)['read-only-reason']).toBeUndefined();
  }, 30_000);

  it('snapshot delete finishes: the snapshot gone, its clusters freed, a clean image', async () => {
    const image = await imageWithTwoStates('delete.qcow2');
    const current = await rawOf(image);
    const job = cancelFrom("releasing the snapshot's clusters");
    removeSnapshot(image, 'first', job);
    expect(job.cancelled).toBe(true);
    expect((await qemuInfo(image)).snapshots).toBeUndefined();
    expect(await rawOf(image)).toEqual(current);
    expect((await qemuCheck(image)).code).toBe(0);
    expect((await qemuInfo(image))['dirty-flag']).toBe(false);
  }, 30_000);

  it('a shrink finishes: the new size, the clusters past it freed, a clean image', async () => {
    const image = await imageWithTwoStates('shrink.qcow2');
    const current = await rawOf(image);
    const job = cancelFrom('releasing the clusters past the end');
    resizeImagePath(image, 16 * 1024, { shrink: true, discardData: true }, job);
    expect(job.cancelled).toBe(true);
    expect(await rawOf(image)).toEqual(current.slice(0, 16 * 1024));
    expect((await qemuCheck(image)).code).toBe(0);
    expect((await qemuInfo(image))['dirty-flag']).toBe(false);
  }, 30_000);

  it('a cancel before the commit point still leaves the image as it was', async () => {
    const image = await imageWithTwoStates('before.qcow2');
    const bytes = fs.readFileSync(image);
    const job = cancelFrom("copying the snapshot's L1 table");
    job.cancelled = true;
    expect(() => revertToSnapshot(image, 'first', job)).toThrow(expect.objectContaining({ code: 'CANCELLED' }));
    expect(fs.readFileSync(image).equals(bytes)).toBe(true);
  }, 30_000);
});
