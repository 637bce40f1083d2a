/**
 * An image with 200 snapshots, most made by Cowbell and some by qemu-img, with guest writes
 * between them: both tools list all of them, Cowbell applies one in the middle and deletes every
 * other one, and afterwards qemu-img check is clean and a sample of the snapshots still holds
 * what the disk held when they were taken. The image is small and the snapshots are made without
 * fdatasync (this test is about bookkeeping at scale, not crashes).
 */
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { snapshotTree } from '../../../src/shared/qcow2/snapshots/snapshot-tree.ts';
import { applySnapshot, createSnapshot, deleteSnapshot } from '../../../src/shared/qcow2/snapshots/snapshots.ts';
import { KiB, MiB } from '../../helpers/image-matrix.ts';
import { firstDifference, inBatches, qemuImg, rawOf, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { openUnsynced } from '../../helpers/observed-file.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';
import { expectCheckClean, expectSameSnapshots } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const COUNT = 200;
const SIZE = 2 * MiB;
const CLUSTER = 4 * KiB;
/** Every tenth snapshot, from the sixth on, is qemu-img's (odd indices: the deletions remove them all). */
const madeByQemu = (index: number): boolean => index % 10 === 5;
const nameOf = (index: number): string => `s${index}`;
/** Snapshots whose data the test models and checks before and after the deletions (even indices stay). */
const SAMPLE = new Set([0, 2, 48, 100, 150, 198]);
/** qemu-img's snapshots whose data is checked before they are deleted. */
const QEMU_SAMPLE = [95, 195];
const APPLIED = 100;

async function qemuSnapshotUnsynced(image: string, action: '-c' | '-d', name: string): Promise<void> {
  await qemuImg(['snapshot', '--image-opts', action, name, `driver=qcow2,file.filename=${image},cache.no-flush=on`]);
}

describe('200 snapshots', { timeout: 120_000 }, () => {
  it('are listed alike by both tools; apply one in the middle, delete every other one: check clean, sampled data as modelled', async ({ expect }) => {
    const image = folder.file('many.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, image, String(SIZE)]);
    const random = new SeededRandom(200);
    const model = new Uint8Array(SIZE);
    const taken = new Map<number, Uint8Array>();
    const ids = new Map<number, string>();

    let opened = Qcow2Image.open(image, { openFile: openUnsynced });
    try {
      for (let index = 0; index < COUNT; index++) {
        // One to three clusters of new data before each snapshot, at a random place.
        const offset = random.int(0, SIZE / CLUSTER - 3) * CLUSTER + random.int(0, CLUSTER);
        const data = random.bytes(random.int(1, 3 * CLUSTER));
        opened.write(data, offset);
        model.set(data, offset);
        if (madeByQemu(index)) {
          opened.close();
          await qemuSnapshotUnsynced(image, '-c', nameOf(index));
          opened = Qcow2Image.open(image, { openFile: openUnsynced });
          ids.set(index, opened.snapshots.at(-1)?.id ?? '');
        } else {
          ids.set(index, createSnapshot(opened, { name: nameOf(index) }).id);
        }
        if (SAMPLE.has(index) || QEMU_SAMPLE.includes(index)) taken.set(index, model.slice());
      }
    } finally {
      opened.close();
    }
    await expectCheckClean(expect, image, `after ${COUNT} snapshots`);
    const listed = await expectSameSnapshots(expect, image, `after ${COUNT} snapshots`, { textListing: true });
    expect(listed.snapshots.map((node) => node.name)).toEqual(Array.from({ length: COUNT }, (_, index) => nameOf(index)));
    // A chain: each snapshot's parent is the one taken before it; Cowbell's recorded, qemu-img's inferred.
    listed.snapshots.forEach((node, index) => {
      expect(node.parentId, `parent of ${node.name}`).toBe(index === 0 ? null : (ids.get(index - 1) ?? ''));
      expect(node.parentInferred, `parent of ${node.name} inferred`).toBe(madeByQemu(index));
    });
    await expectSampleData(expect, image, taken, [...SAMPLE, ...QEMU_SAMPLE], 'before the deletions');

    opened = Qcow2Image.open(image, { openFile: openUnsynced });
    try {
      applySnapshot(opened, nameOf(APPLIED));
      for (let index = 1; index < COUNT; index += 2) {
        // A few of the deletions by qemu-img, on the image as Cowbell left it.
        if (index % 40 === 1) {
          opened.close();
          await qemuSnapshotUnsynced(image, '-d', nameOf(index));
          opened = Qcow2Image.open(image, { openFile: openUnsynced });
        } else deleteSnapshot(opened, nameOf(index));
      }
      const tree = snapshotTree(opened);
      expect(tree.snapshots).toHaveLength(COUNT / 2);
      expect(tree.currentParentId).toBe(ids.get(APPLIED));
      expect(tree.currentParentInferred).toBe(false);
      // Still a chain, over the snapshots that are left.
      tree.snapshots.forEach((node, position) => {
        expect(node.parentId, `parent of ${node.name} after the deletions`).toBe(position === 0 ? null : (ids.get(2 * (position - 1)) ?? ''));
      });
    } finally {
      opened.close();
    }
    await expectCheckClean(expect, image, 'after apply and the deletions');
    await expectSameSnapshots(expect, image, 'after apply and the deletions');
    const current = await rawOf(image);
    expect(firstDifference(current, taken.get(APPLIED) ?? new Uint8Array()), 'first wrong byte of the current state').toBe(-1);
    await expectSampleData(expect, image, taken, [...SAMPLE], 'after the deletions');
  });
});

async function expectSampleData(expect: ExpectStatic, image: string, taken: Map<number, Uint8Array>, sample: number[], label: string): Promise<void> {
  const qemuViews = await inBatches(sample.map((index) => () => rawOf(image, { snapshot: nameOf(index) })), 2);
  const opened = Qcow2Image.open(image, { readOnly: true });
  try {
    sample.forEach((index, position) => {
      const expected = taken.get(index) ?? new Uint8Array();
      expect(firstDifference(qemuViews[position] ?? new Uint8Array(), expected), `${label}: first wrong byte of ${nameOf(index)} (qemu-img)`).toBe(-1);
      const entry = opened.snapshots.find((snapshot) => snapshot.name === nameOf(index));
      expect(entry, `${label}: ${nameOf(index)} is listed`).toBeDefined();
      if (entry === undefined) return;
      const reader = opened.snapshotReader(entry);
      const bytes = new Uint8Array(reader.virtualSize);
      reader.readInto(bytes, 0);
      expect(firstDifference(bytes, expected), `${label}: first wrong byte of ${nameOf(index)} (Cowbell)`).toBe(-1);
    });
  } finally {
    opened.close();
  }
}
