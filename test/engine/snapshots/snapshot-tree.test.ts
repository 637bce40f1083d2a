/**
 * The snapshot tree: parents Cowbell records survive qemu-img's own snapshot operations, and
 * parents of snapshots qemu-img made are inferred from the data the states share.
 *
 * Every image here is 4 MiB with 64 KiB clusters (one L2 table), and every write covers whole
 * clusters, so "how far apart two states are" is a count of clusters the test controls.
 */
import { afterAll, beforeAll, describe, it, type ExpectStatic } from 'vitest';
import type { SnapshotTree } from '../../../src/shared/qcow2/model.ts';
import { readSnapshotTree, revertToSnapshot, takeSnapshot } from '../../../src/shared/qcow2/snapshots/operations.ts';
import { MiB } from '../../helpers/image-matrix.ts';
import { qemuImg, qemuIo, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { expectCheckClean, rawSnapshotEntries } from '../../helpers/snapshot-scenario.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

const CLUSTER = 64 * 1024;

async function newImage(name: string): Promise<string> {
  const image = folder.file(name);
  await qemuImg(['create', '-q', '-f', 'qcow2', '-o', `cluster_size=${CLUSTER}`, image, String(4 * MiB)]);
  return image;
}

/** Writes `count` whole clusters from cluster `first` through qemu-io. */
async function writeClusters(image: string, first: number, count: number, pattern: number): Promise<void> {
  await qemuIo(image, [`write -P ${pattern} ${first * CLUSTER} ${count * CLUSTER}`]);
}

interface ParentRow {
  name: string;
  parent: string | null;
  inferred: boolean;
}

/** The tree as name → parent name rows, for readable expectations. */
function parents(tree: SnapshotTree): ParentRow[] {
  const names = new Map(tree.snapshots.map((node) => [node.id, node.name]));
  return tree.snapshots.map((node) => ({ name: node.name, parent: node.parentId === null ? null : (names.get(node.parentId) ?? `missing ${node.parentId}`), inferred: node.parentInferred }));
}

function currentParentName(tree: SnapshotTree): string | null {
  return tree.snapshots.find((node) => node.id === tree.currentParentId)?.name ?? null;
}

function reasonOf(tree: SnapshotTree, name: string): string {
  return tree.snapshots.find((node) => node.name === name)?.parentReason ?? '';
}

describe('parents Cowbell records survive qemu-img snapshot -c, -d and -a', { timeout: 60_000 }, () => {
  it('Cowbell\'s snapshots keep their recorded parents and their entries byte for byte; qemu-img\'s are inferred with a reason', async ({ expect }) => {
    const image = await newImage('survive.qcow2');
    // Cowbell builds A → B → C and A → D → E, then goes back to B and writes.
    await writeClusters(image, 0, 4, 1);
    takeSnapshot(image, 'A');
    await writeClusters(image, 10, 1, 2);
    takeSnapshot(image, 'B');
    await writeClusters(image, 20, 3, 3);
    takeSnapshot(image, 'C');
    revertToSnapshot(image, 'A');
    await writeClusters(image, 30, 2, 4);
    takeSnapshot(image, 'D');
    await writeClusters(image, 40, 1, 5);
    takeSnapshot(image, 'E');
    revertToSnapshot(image, 'B');
    await writeClusters(image, 50, 1, 6);

    const built = readSnapshotTree(image);
    expect(parents(built)).toEqual([
      { name: 'A', parent: null, inferred: false },
      { name: 'B', parent: 'A', inferred: false },
      { name: 'C', parent: 'B', inferred: false },
      { name: 'D', parent: 'A', inferred: false },
      { name: 'E', parent: 'D', inferred: false },
    ]);
    expect({ current: currentParentName(built), inferred: built.currentParentInferred }).toEqual({ current: 'B', inferred: false });
    const cowbellEntries = rawSnapshotEntries(image);
    const idOf = (tree: SnapshotTree, name: string): string => tree.snapshots.find((node) => node.name === name)?.id ?? '';

    const expectEntriesKept = (label: string, names: string[]): void => {
      const now = rawSnapshotEntries(image);
      for (const name of names) expect(now.get(idOf(built, name)), `${label}: ${name}'s entry`).toEqual(cowbellEntries.get(idOf(built, name)));
    };
    const step = async (label: string, args: string[], expectedParents: ParentRow[], current: { name: string; inferred: boolean }, kept: string[]): Promise<SnapshotTree> => {
      await qemuImg(['snapshot', ...args, image]);
      await expectCheckClean(expect, image, label);
      const tree = readSnapshotTree(image);
      expect(parents(tree), `${label}: parents`).toEqual(expectedParents);
      expect({ name: currentParentName(tree), inferred: tree.currentParentInferred }, `${label}: the current state's parent`).toEqual(current);
      expectEntriesKept(label, kept);
      return tree;
    };

    // Q is B plus cluster 50: closest to B (1 cluster apart; A is 2, C is 4, D is 4, E is 5).
    let tree = await step('qemu-img snapshot -c Q', ['-c', 'Q'], [
      { name: 'A', parent: null, inferred: false },
      { name: 'B', parent: 'A', inferred: false },
      { name: 'C', parent: 'B', inferred: false },
      { name: 'D', parent: 'A', inferred: false },
      { name: 'E', parent: 'D', inferred: false },
      { name: 'Q', parent: 'B', inferred: true },
    ], { name: 'Q', inferred: true }, ['A', 'B', 'C', 'D', 'E']);
    expect(reasonOf(tree, 'Q')).toMatch(/"B"/);
    // The current state is exactly what qemu-img just saved as Q.
    expect(tree.currentParentReason).toMatch(/identical to "Q"/);

    await step('qemu-img snapshot -d E (no children)', ['-d', 'E'], [
      { name: 'A', parent: null, inferred: false },
      { name: 'B', parent: 'A', inferred: false },
      { name: 'C', parent: 'B', inferred: false },
      { name: 'D', parent: 'A', inferred: false },
      { name: 'Q', parent: 'B', inferred: true },
    ], { name: 'Q', inferred: true }, ['A', 'B', 'C', 'D']);

    // With B gone, C's recorded parent is missing: C is inferred (A is the only older snapshot);
    // Q (B plus cluster 50) is now closest to A (2 clusters; C is 4, D is 4).
    tree = await step('qemu-img snapshot -d B (in the middle)', ['-d', 'B'], [
      { name: 'A', parent: null, inferred: false },
      { name: 'C', parent: 'A', inferred: true },
      { name: 'D', parent: 'A', inferred: false },
      { name: 'Q', parent: 'A', inferred: true },
    ], { name: 'Q', inferred: true }, ['A', 'C', 'D']);
    expect(reasonOf(tree, 'C')).toMatch(/recorded parent was deleted/);

    // qemu-img rewrites the active L1 in place: the current state is C's exactly.
    tree = await step('qemu-img snapshot -a C', ['-a', 'C'], [
      { name: 'A', parent: null, inferred: false },
      { name: 'C', parent: 'A', inferred: true },
      { name: 'D', parent: 'A', inferred: false },
      { name: 'Q', parent: 'A', inferred: true },
    ], { name: 'C', inferred: true }, ['A', 'C', 'D']);
    expect(tree.currentParentReason).toMatch(/identical to "C"/);

    // After writes the current state is still closest to C; a snapshot Cowbell takes now records C.
    await writeClusters(image, 60, 1, 7);
    tree = readSnapshotTree(image);
    expect({ current: currentParentName(tree), inferred: tree.currentParentInferred }).toEqual({ current: 'C', inferred: true });
    takeSnapshot(image, 'F');
    tree = readSnapshotTree(image);
    expect(parents(tree).at(-1)).toEqual({ name: 'F', parent: 'C', inferred: false });
    expect({ current: currentParentName(tree), inferred: tree.currentParentInferred }).toEqual({ current: 'F', inferred: false });
  });
});

describe('parents of snapshots qemu-img made are inferred', { timeout: 60_000 }, () => {
  async function expectTree(expect: ExpectStatic, image: string, expected: ParentRow[], current: string): Promise<SnapshotTree> {
    await expectCheckClean(expect, image);
    const tree = readSnapshotTree(image);
    expect(parents(tree)).toEqual(expected);
    expect(currentParentName(tree)).toBe(current);
    expect(tree.currentParentInferred).toBe(true);
    for (const node of tree.snapshots) if (node.parentInferred) expect(node.parentReason, `${node.name} says why`).toMatch(/\S/);
    return tree;
  }

  it('a chain: each snapshot descends from the one before (it differs from it only by the writes between them; from older ones by more)', async ({ expect }) => {
    const image = await newImage('chain.qcow2');
    for (const [index, name] of ['s1', 's2', 's3', 's4'].entries()) {
      await writeClusters(image, index * 5, 2, index + 1);
      await qemuImg(['snapshot', '-c', name, image]);
    }
    await writeClusters(image, 40, 1, 9);
    await expectTree(expect, image, [
      { name: 's1', parent: null, inferred: false },
      { name: 's2', parent: 's1', inferred: true },
      { name: 's3', parent: 's2', inferred: true },
      { name: 's4', parent: 's3', inferred: true },
    ], 's4');
  });

  it('branches after apply: a snapshot taken after going back descends from the snapshot applied, not from the latest one', async ({ expect }) => {
    const image = await newImage('branches.qcow2');
    await writeClusters(image, 0, 4, 1);
    await qemuImg(['snapshot', '-c', 's1', image]);
    await writeClusters(image, 10, 2, 2);
    await qemuImg(['snapshot', '-c', 's2', image]);
    await writeClusters(image, 20, 2, 3);
    await qemuImg(['snapshot', '-c', 's3', image]);
    // Back to s1: s4 is s1 plus 1 cluster (2 + 1 clusters from s2, 4 + 1 from s3).
    await qemuImg(['snapshot', '-a', 's1', image]);
    await writeClusters(image, 30, 1, 4);
    await qemuImg(['snapshot', '-c', 's4', image]);
    await writeClusters(image, 31, 1, 5);
    await qemuImg(['snapshot', '-c', 's5', image]);
    // Back to s2 and a write there: s6 descends from s2 (1 cluster apart), not from s5 (the latest).
    await qemuImg(['snapshot', '-a', 's2', image]);
    await writeClusters(image, 45, 1, 6);
    await qemuImg(['snapshot', '-c', 's6', image]);
    const tree = await expectTree(expect, image, [
      { name: 's1', parent: null, inferred: false },
      { name: 's2', parent: 's1', inferred: true },
      { name: 's3', parent: 's2', inferred: true },
      { name: 's4', parent: 's1', inferred: true },
      { name: 's5', parent: 's4', inferred: true },
      { name: 's6', parent: 's2', inferred: true },
    ], 's6');
    expect(reasonOf(tree, 's4')).toMatch(/"s1"/);
    // Applied and left unchanged, the current state is the applied snapshot's.
    await qemuImg(['snapshot', '-a', 's3', image]);
    expect(currentParentName(readSnapshotTree(image))).toBe('s3');
    await writeClusters(image, 50, 1, 7);
    expect(currentParentName(readSnapshotTree(image))).toBe('s3');
  });

  it('no writes between two snapshots: the later one descends from the earlier, and a tie goes to the later snapshot', async ({ expect }) => {
    const image = await newImage('ties.qcow2');
    await writeClusters(image, 0, 2, 1);
    await qemuImg(['snapshot', '-c', 's1', image]);
    await qemuImg(['snapshot', '-c', 's2', image]);
    await writeClusters(image, 8, 1, 2);
    await qemuImg(['snapshot', '-c', 's3', image]);
    // s3 is 1 cluster from both s1 and s2 (which are identical): the later one, s2, is its parent.
    await expectTree(expect, image, [
      { name: 's1', parent: null, inferred: false },
      { name: 's2', parent: 's1', inferred: true },
      { name: 's3', parent: 's2', inferred: true },
    ], 's3');
  });
});
