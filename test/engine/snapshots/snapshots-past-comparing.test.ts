/**
 * Past MAX_COMPARED_STATES states the tree takes parents by date instead of comparing every two
 * states' mappings (found by the scale audit: that comparison grew as the cube of the snapshot
 * count — 44 s for 2,000 snapshots, over 10 minutes for 5,000 — and near QEMU's 65,536 its
 * count² table failed to allocate; the text tree's printer overflowed the stack at ~5,000 in a line).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeTree } from '../../../src/cli/commands/snapshot.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import type { SnapshotNode, SnapshotTree } from '../../../src/shared/qcow2/model.ts';
import { MAX_COMPARED_STATES, snapshotTree } from '../../../src/shared/qcow2/snapshots/snapshot-tree.ts';
import { openUnsynced } from '../../helpers/observed-file.ts';
import { qemuCheck, qemuImg, tempDir, type TempDir } from '../../helpers/qemu.ts';

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe(`more than ${MAX_COMPARED_STATES} states`, { timeout: 120_000 }, () => {
  it('each snapshot’s parent is the one before it, said so; the current state’s is the newest; qemu-img check is clean', async () => {
    const image = folder.file('many.qcow2');
    await qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096', image, '1M']);
    const count = MAX_COMPARED_STATES + 5;
    // qemu-img's snapshots (Cowbell records the parents of its own, and would not infer them), without flushes.
    for (let start = 0; start < count; start += 50) {
      for (let index = start; index < Math.min(count, start + 50); index++) {
        await qemuImg(['snapshot', '--image-opts', '-c', `s${index}`, `driver=qcow2,file.filename=${image},cache.no-flush=on`]);
      }
      const opened = Qcow2Image.open(image, { openFile: openUnsynced });
      try {
        opened.write(new Uint8Array(4096).fill((start % 250) + 1), ((start / 50) % 200) * 4096);
      } finally {
        opened.close();
      }
    }
    const reopened = Qcow2Image.open(image, { readOnly: true });
    let tree: SnapshotTree;
    try {
      tree = snapshotTree(reopened);
    } finally {
      reopened.close();
    }
    expect(tree.snapshots).toHaveLength(count);
    const byName = new Map(tree.snapshots.map((node) => [node.name, node]));
    for (let index = 1; index < count; index++) {
      const node = byName.get(`s${index}`);
      expect(node?.parentId, `s${index}`).toBe(byName.get(`s${index - 1}`)?.id);
      expect(node?.parentInferred).toBe(true);
      expect(node?.parentReason).toBe(`"s${index - 1}", the snapshot before it (with ${count + 1} states, their mappings are not compared)`);
    }
    expect(tree.currentParentId).toBe(byName.get(`s${count - 1}`)?.id);
    expect(tree.currentParentReason).toMatch(/the newest snapshot \(with \d+ states, their mappings are not compared\)/);
    expect((await qemuCheck(image)).code).toBe(0);

    // Reverted by another program: the current state maps exactly what that snapshot does, and says so (regression audit).
    await qemuImg(['snapshot', '-a', 's10', image]);
    const reverted = Qcow2Image.open(image, { readOnly: true });
    try {
      const after = snapshotTree(reverted);
      // s0–s49 hold one state (the writes come every 50 snapshots): the latest of them, as where mappings are compared.
      expect(after.currentParentId).toBe(byName.get('s49')?.id);
      expect(after.currentParentInferred).toBe(true);
      expect(after.currentParentReason).toBe('the current state is still identical to "s49"');
    } finally {
      reverted.close();
    }
  });

  it('the text tree prints a line of 20,000 snapshots, each the child of the one before', () => {
    const snapshots: SnapshotNode[] = Array.from({ length: 20_000 }, (_, index) => ({
      id: String(index + 1),
      name: `s${index + 1}`,
      parentId: index === 0 ? null : String(index),
      parentInferred: false,
      date: '2026-12-05T10:00:00Z',
      vmClock: 0,
      vmStateSize: 0,
      exclusiveBytes: 0,
      sharedBytes: 0,
    }));
    const tree = { snapshots, currentParentId: '20000', currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } } as unknown as SnapshotTree;
    const text = describeTree(tree);
    expect(text.split('\n').filter((line) => /^\s*\d+ +s\d+/.test(line))).toHaveLength(20_000);
    expect(text).toContain('* you are here');
  });
});
