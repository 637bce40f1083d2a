/**
 * forEachEntry, the walk every phase of a rewrite makes over each L2 table: it reads a table the
 * cache does not hold into a buffer kept per image, so a walk of the same image nested inside a
 * visit must read into its own and leave the outer table as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { forEachEntry } from '../../../src/shared/qcow2/rewrite/plan.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

const MiB = 1024 * 1024;

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

/** The data cluster offsets an L2 table names, by slot. */
function hostOffsets(image: Qcow2Image, l2Offset: number): Map<number, number> {
  const found = new Map<number, number>();
  forEachEntry(image, l2Offset, (entry, slot) => {
    if (entry.kind === 'normal') found.set(slot, entry.hostOffset);
  });
  return found;
}

describe('forEachEntry', () => {
  it('gives each table its own entries, also when a visit walks another table of the same image', async () => {
    // 64 KiB clusters: one L2 table maps 512 MiB, so writes at 0 and at 600 MiB land in two tables.
    const path = folder.file('two-tables.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', path, '1G']);
    await qemuIo(path, ['write -P 1 0 192K', `write -P 2 ${600 * MiB} 128K`]);
    const image = Qcow2Image.open(path, { readOnly: true });
    try {
      const first = image.l2OffsetAt(image.l1, 0);
      const second = image.l2OffsetAt(image.l1, 1);
      expect(first).not.toBe(0);
      expect(second).not.toBe(0);
      const alone = { first: hostOffsets(image, first), second: hostOffsets(image, second) };
      expect([...alone.first.keys()]).toEqual([0, 1, 2]);
      expect([...alone.second.keys()]).toEqual([(600 * MiB) / 65536 - 8192, (600 * MiB) / 65536 - 8191]);

      const outer = new Map<number, number>();
      let inner = new Map<number, number>();
      forEachEntry(image, first, (entry, slot) => {
        if (entry.kind === 'normal') outer.set(slot, entry.hostOffset);
        if (slot === 0) inner = hostOffsets(image, second);
      });
      expect(outer).toEqual(alone.first);
      expect(inner).toEqual(alone.second);
      // And after the nested walk, the image's own buffer serves the next walk as before.
      expect(hostOffsets(image, first)).toEqual(alone.first);
    } finally {
      image.close();
    }
  });
});
