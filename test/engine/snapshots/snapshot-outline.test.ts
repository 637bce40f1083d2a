/**
 * The quick tree (snapshot-outline.ts): what the app shows before the mapping pass. It reads the
 * header cluster and the snapshot table only — never a byte of an L1, L2 or refcount table — and
 * is the full tree without its space figures: the same snapshots, fields and recorded parents,
 * with a placeholder (marked pending) where only the pass can tell a parent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { NodeBlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import type { SnapshotTree } from '../../../src/shared/qcow2/model.ts';
import { readSnapshotOutline, readSnapshotTree, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { snapshotOutline } from '../../../src/shared/qcow2/snapshots/snapshot-outline.ts';
import { MiB } from '../../helpers/image-matrix.ts';
import { ObservedFile, type ObservedRead } from '../../helpers/observed-file.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const CLUSTER = 64 * 1024;

async function writeClusters(image: string, first: number, count: number, pattern: number): Promise<void> {
  await qemuIo(image, [`write -P ${pattern} ${first * CLUSTER} ${count * CLUSTER}`]);
}

interface Range {
  what: string;
  start: number;
  end: number;
}

/** Where every L1, L2 and refcount table of the image lies, and the header cluster and snapshot table. */
function layout(path: string): { tables: Range[]; allowed: Range[] } {
  const image = Qcow2Image.open(path, { readOnly: true });
  try {
    const tables: Range[] = [];
    const l1s = [image.l1, ...image.snapshots.map((snapshot) => image.loadSnapshotL1(snapshot))];
    for (const l1 of l1s) {
      tables.push({ what: `L1 table at ${l1.offset}`, start: l1.offset, end: l1.offset + l1.size * 8 });
      for (let index = 0; index < l1.size; index++) {
        const l2 = image.l2OffsetAt(l1, index);
        if (l2 !== 0) tables.push({ what: `L2 table at ${l2}`, start: l2, end: l2 + CLUSTER });
      }
    }
    const refcounts = image.refcounts;
    tables.push({ what: 'refcount table', start: refcounts.tableOffset, end: refcounts.tableOffset + refcounts.tableClusters * CLUSTER });
    for (let index = 0; index < refcounts.tableEntries; index++) {
      const block = refcounts.blockOffset(index);
      if (block !== 0) tables.push({ what: `refcount block at ${block}`, start: block, end: block + CLUSTER });
    }
    const allowed = [
      { what: 'header cluster', start: 0, end: image.clusterBytes },
      { what: 'snapshot table', start: image.header.snapshotsOffset, end: image.header.snapshotsOffset + image.snapshotTableBytes },
    ];
    return { tables, allowed };
  } finally {
    image.close();
  }
}

function outlineWithReads(path: string): { tree: SnapshotTree; reads: ObservedRead[] } {
  const file = new ObservedFile(NodeBlockFile.open(path, { readOnly: true }), { sync: false, record: true });
  try {
    return { tree: snapshotOutline(file), reads: file.reads };
  } finally {
    file.close();
  }
}

function expectNoTableRead(path: string, reads: ObservedRead[]): void {
  const { tables, allowed } = layout(path);
  expect(reads.length).toBeGreaterThan(0);
  for (const read of reads) {
    const end = read.position + read.length;
    const touched = tables.filter((table) => read.position < table.end && table.start < end).map((table) => table.what);
    expect(touched, `read of ${read.length} bytes at ${read.position}`).toEqual([]);
    expect(
      allowed.some((range) => read.position >= range.start && end <= range.end),
      `read of ${read.length} bytes at ${read.position} lies in the header cluster or the snapshot table`,
    ).toBe(true);
  }
}

/** The full tree as the quick one shows it: no space figures. */
function withoutFigures(tree: SnapshotTree): SnapshotTree {
  return {
    ...tree,
    current: { exclusiveBytes: null, sharedBytes: null },
    snapshots: tree.snapshots.map((node) => ({ ...node, exclusiveBytes: null, sharedBytes: null })),
  };
}

function hasPending(tree: SnapshotTree): boolean {
  return tree.currentParentPending === true || tree.snapshots.some((node) => node.parentPending === true);
}

describe('the quick tree, from the snapshot table alone', { timeout: 60_000 }, () => {
  it('reads no L1, L2 or refcount table and equals the full tree without its figures; qemu-img’s snapshot gets a pending placeholder the pass confirms', async () => {
    const image = folder.file('outline.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, image, String(4 * MiB)]);
    // Cowbell: A → B, A → D; the current state based on D, written since.
    await writeClusters(image, 0, 4, 1);
    takeSnapshot(image, 'A', undefined, 'the first one');
    await writeClusters(image, 10, 1, 2);
    takeSnapshot(image, 'B');
    revertToSnapshot(image, 'A');
    await writeClusters(image, 20, 1, 3);
    takeSnapshot(image, 'D');
    await writeClusters(image, 30, 1, 4);

    const full = readSnapshotTree(image);
    const { tree: quick, reads } = outlineWithReads(image);
    expectNoTableRead(image, reads);
    // Every parent is Cowbell's record; the current state's stays pending until the pass (the VM may have written since).
    expect(quick.currentParentPending).toBe(true);
    expect({ ...quick, currentParentPending: undefined }).toEqual(withoutFigures(full));
    expect(quick.snapshots.map((node) => [node.name, node.diskSize, node.note])).toEqual([
      ['A', 4 * MiB, 'the first one'],
      ['B', 4 * MiB, undefined],
      ['D', 4 * MiB, undefined],
    ]);
    expect(full.snapshots.every((node) => node.exclusiveBytes !== null && node.sharedBytes !== null)).toBe(true);
    expect(hasPending(full)).toBe(false);

    // qemu-img's snapshot has no record and three older snapshots: only the pass can tell its parent.
    // New L2 tables then land after the snapshot table, where an over-long read of the table would touch them.
    await qemuImg(['snapshot', '-c', 'Q', image]);
    await writeClusters(image, 40, 4, 5);
    await writeClusters(image, 60, 1, 6);
    const fullAfter = readSnapshotTree(image);
    const { tree: quickAfter, reads: readsAfter } = outlineWithReads(image);
    expectNoTableRead(image, readsAfter);
    const q = quickAfter.snapshots.find((node) => node.name === 'Q');
    const fullQ = fullAfter.snapshots.find((node) => node.name === 'Q');
    expect(q).toMatchObject({ parentPending: true, parentInferred: true, exclusiveBytes: null });
    expect(q?.parentReason).toContain('until the mappings are compared');
    // The placeholder is the snapshot before it; the pass finds the same (Q is D plus cluster 30).
    expect(q?.parentId).toBe(fullAfter.snapshots.find((node) => node.name === 'D')?.id);
    expect(fullQ?.parentId).toBe(q?.parentId);
    expect(fullQ?.parentPending).toBeUndefined();
    // Another program's snapshot makes Cowbell's mark stale: the placeholder is the newest snapshot, as the pass finds.
    expect(quickAfter).toMatchObject({ currentParentPending: true, currentParentInferred: true, currentParentId: fullQ?.id });
    expect(fullAfter).toMatchObject({ currentParentId: fullQ?.id, currentParentInferred: true });
    // Everything the quick tree does not leave pending is the full tree's, figures aside.
    const settled = (tree: SnapshotTree) => tree.snapshots.filter((node) => node.name !== 'Q');
    expect(settled(quickAfter)).toEqual(settled(withoutFigures(fullAfter)));
    expect(hasPending(fullAfter)).toBe(false);
  });

  it('an image without snapshots: the current state alone, nothing counted yet; a file that is not qcow2 fails as the full tree does', async () => {
    const image = folder.file('empty.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', image, String(4 * MiB)]);
    expect(readSnapshotOutline(image)).toEqual({ snapshots: [], currentParentId: null, currentParentInferred: false, current: { exclusiveBytes: null, sharedBytes: null } });
    const raw = folder.file('plain.raw');
    await qemuImg(['create', '-q', '-f', 'raw', raw, String(MiB)]);
    expect(() => readSnapshotOutline(raw)).toThrow(expect.objectContaining({ code: 'BAD_MAGIC' }));
    expect(() => readSnapshotTree(raw)).toThrow(expect.objectContaining({ code: 'BAD_MAGIC' }));
  });
});
