/**
 * Snapshots QEMU wrote before 5.2 carry 16 bytes of extra data (no icount), or none at all (v2):
 * QEMU reads the missing icount as -1 ("none") and keeps it so when it rewrites the entry. Cowbell
 * writes its record after QEMU's fields, and must keep that "none" too, as qemu-img shows it.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { changeSnapshotNote } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { cutSnapshotExtraData } from '../../helpers/qcow2-poke.ts';
import { qemuCheck, qemuImg, qemuInfo, tempDir } from '../../helpers/qemu.ts';

const folder = tempDir();
afterAll(() => folder.cleanup());

async function icounts(image: string): Promise<(number | undefined)[]> {
  return ((await qemuInfo(image)).snapshots ?? []).map((snapshot) => (snapshot as { icount?: number }).icount);
}

describe('snapshot entries without an icount (QEMU before 5.2)', () => {
  it('a note and a compact keep "no icount" as QEMU does, where they wrote 0', async () => {
    const image = folder.file('old-extra.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
    await qemuImg(['snapshot', '-c', 's1', image]);
    await qemuImg(['snapshot', '-c', 's2', image]);
    cutSnapshotExtraData(image, [16, 16]);
    expect(await icounts(image), 'qemu-img reads none').toEqual([undefined, undefined]);

    changeSnapshotNote(image, { name: 's1' }, 'before the upgrade');
    expect(await icounts(image)).toEqual([undefined, undefined]);
    // QEMU's own rewrite of the table leaves them so too.
    await qemuImg(['snapshot', '-c', 's3', image]);
    expect((await icounts(image)).slice(0, 2)).toEqual([undefined, undefined]);

    rewriteImage({ source: image, compression: 'keep' });
    expect((await icounts(image)).slice(0, 2)).toEqual([undefined, undefined]);
    expect((await qemuCheck(image)).code).toBe(0);
  });

  // Found by the damaged-images audit: the verify compared the icount's 4 stray bytes with the "none" written back, and failed every rewrite.
  it('an icount cut short (20 bytes of extra data, which QEMU reads as none): compact goes through, verified, with "none" written whole', async () => {
    const image = folder.file('cut-icount.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, '8M']);
    await qemuImg(['snapshot', '-c', 's1', image]);
    cutSnapshotExtraData(image, [20]);
    expect((await qemuCheck(image)).code).toBe(0);
    expect(await icounts(image)).toEqual([undefined]);
    const result = rewriteImage({ source: image, compression: 'keep' });
    expect(result.verified).toBe(true);
    expect(await icounts(image)).toEqual([undefined]);
    expect((await qemuCheck(image)).code).toBe(0);
  });
});
