/**
 * The quick tree and the full one, as one picture: the quick tree (snapshot table alone) shows at
 * once with its space figures null ("counting…"); on a re-read it keeps the figures the last tree
 * had for the same snapshots until they are recounted, so nothing blinks. The full tree then fills
 * the tree shown in place — same objects, same order — so nothing is drawn again that did not change.
 */
import type { SnapshotNode, SnapshotTree } from '../../../shared/qcow2/model.ts';

/** The quick tree, with the figures `previous` had for the same states (null where it had none). */
export function carryOver(previous: SnapshotTree | null, quick: SnapshotTree): SnapshotTree {
  if (previous === null) return quick;
  const before = new Map(previous.snapshots.map((node) => [node.id, node]));
  return {
    ...quick,
    current: { ...previous.current },
    snapshots: quick.snapshots.map((node) => {
      const old = before.get(node.id);
      return old === undefined ? node : { ...node, exclusiveBytes: old.exclusiveBytes, sharedBytes: old.sharedBytes };
    }),
  };
}

/** Makes `target` hold exactly `source`'s fields (a field `source` lacks is removed). */
function assignExactly<T extends object>(target: T, source: T): void {
  for (const key of Object.keys(target) as (keyof T)[]) if (!(key in source)) delete target[key];
  Object.assign(target, source);
}

function sameSnapshots(a: SnapshotNode[], b: SnapshotNode[]): boolean {
  return a.length === b.length && a.every((node, index) => node.id === b[index]?.id);
}

/**
 * The full tree, written into `shown` when it shows the same snapshots (figures arrive, a pending
 * parent is confirmed or moved); otherwise (another program changed the disk meanwhile) the full
 * tree itself.
 */
export function fillIn(shown: SnapshotTree | null, full: SnapshotTree): SnapshotTree {
  if (shown === null || !sameSnapshots(shown.snapshots, full.snapshots)) return full;
  shown.snapshots.forEach((node, index) => {
    const counted = full.snapshots[index];
    if (counted !== undefined) assignExactly(node, counted);
  });
  const { snapshots: _snapshots, current, ...rest } = full;
  for (const key of Object.keys(shown) as (keyof SnapshotTree)[]) if (key !== 'snapshots' && key !== 'current' && !(key in rest)) delete shown[key];
  Object.assign(shown, rest);
  assignExactly(shown.current, current);
  return shown;
}

/** What is left when the full tree could not be read: the quick tree's facts, no figures (none are known for this read). */
export function withoutFigures(tree: SnapshotTree): void {
  tree.current.exclusiveBytes = null;
  tree.current.sharedBytes = null;
  for (const node of tree.snapshots) {
    node.exclusiveBytes = null;
    node.sharedBytes = null;
  }
}
