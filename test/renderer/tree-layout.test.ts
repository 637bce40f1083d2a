import { describe, expect, it } from 'vitest';
import type { SnapshotTree } from '../../src/shared/ipc/contract.ts';
import type { SnapshotNode } from '../../src/shared/qcow2/model.ts';
import { CURRENT_ID, layoutSnapshotTree, neighbourInDirection } from '../../src/renderer/src/lib/tree-layout.ts';

function node(id: string, parentId: string | null, minute: number, extra: Partial<SnapshotNode> = {}): SnapshotNode {
  return {
    id,
    name: `snap ${id}`,
    parentId,
    parentInferred: false,
    date: new Date(Date.UTC(2025, 10, 25, 12, minute)).toISOString(),
    vmClock: 0,
    vmStateSize: 0,
    exclusiveBytes: Number(id) * 65536,
    sharedBytes: 0,
    ...extra,
  };
}

/** 1 → 2 → 3, then a revert to 2 and a new snapshot 4 from there, and the current state under 4. */
function branchedTree(): SnapshotTree {
  return {
    snapshots: [node('1', null, 0), node('2', '1', 1), node('3', '2', 2), node('4', '2', 3)],
    currentParentId: '4',
    currentParentInferred: false,
    current: { exclusiveBytes: 4096, sharedBytes: 0 },
  };
}

describe('snapshot tree layout', () => {
  it('draws one edge from each parent to each child, and the current state under its parent', () => {
    const layout = layoutSnapshotTree(branchedTree());
    expect(layout.edges.map((edge) => `${edge.fromId}->${edge.toId}`).sort()).toEqual(['1->2', '2->3', '2->4', `4->${CURRENT_ID}`]);
    const current = layout.byId.get(CURRENT_ID);
    expect(current?.kind).toBe('current');
    expect(current?.parentId).toBe('4');
    expect(layout.nodes).toHaveLength(5);
  });

  it('puts children below their parent and a branch beside its sibling, older to the left', () => {
    const layout = layoutSnapshotTree(branchedTree());
    const at = (id: string) => layout.byId.get(id)!;
    expect(at('1').y).toBe(0);
    expect(at('2').y).toBeGreaterThan(at('1').y);
    expect(at('3').y).toBe(at('4').y);
    expect(at('3').x).toBeLessThan(at('4').x);
    expect(at(CURRENT_ID).y).toBeGreaterThan(at('4').y);
    expect(at('2').childIds).toEqual(['3', '4']);
    // Siblings stand far enough apart for their labels.
    expect(at('4').x - at('3').x).toBeGreaterThanOrEqual(200);
  });

  it('keeps a linear history in one straight column', () => {
    const tree: SnapshotTree = {
      snapshots: [node('1', null, 0), node('2', '1', 1), node('3', '2', 2)],
      currentParentId: '3',
      currentParentInferred: false,
      current: { exclusiveBytes: 0, sharedBytes: 0 },
    };
    const layout = layoutSnapshotTree(tree);
    expect(new Set(layout.nodes.map((entry) => entry.x)).size).toBe(1);
    expect(layout.edges.every((edge) => /^M[-\d.]+,[-\d.]+V[-\d.]+$/.test(edge.path))).toBe(true);
  });

  it('marks inferred parents, with the reason, for the snapshots and the current state', () => {
    const tree: SnapshotTree = {
      snapshots: [node('1', null, 0), node('2', '1', 1, { parentInferred: true, parentReason: 'taken just before it' })],
      currentParentId: '2',
      currentParentInferred: true,
      currentParentReason: 'shares the most data with it',
      current: { exclusiveBytes: 0, sharedBytes: 0 },
    };
    const edges = layoutSnapshotTree(tree).edges;
    expect(edges.find((edge) => edge.toId === '2')).toMatchObject({ inferred: true, reason: 'taken just before it' });
    expect(edges.find((edge) => edge.toId === CURRENT_ID)).toMatchObject({ inferred: true, reason: 'shares the most data with it' });
    expect(layoutSnapshotTree(branchedTree()).edges.every((edge) => !edge.inferred && edge.reason === null)).toBe(true);
  });

  it('shows a disk without snapshots as the current state alone, and several roots side by side', () => {
    const empty = layoutSnapshotTree({ snapshots: [], currentParentId: null, currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } });
    expect(empty.nodes.map((entry) => entry.id)).toEqual([CURRENT_ID]);
    expect(empty.edges).toEqual([]);
    const forest = layoutSnapshotTree({
      snapshots: [node('1', null, 0), node('2', null, 1)],
      currentParentId: '2',
      currentParentInferred: false,
      current: { exclusiveBytes: 0, sharedBytes: 0 },
    });
    expect(forest.byId.get('1')!.y).toBe(forest.byId.get('2')!.y);
    expect(forest.edges.map((edge) => `${edge.fromId}->${edge.toId}`)).toEqual([`2->${CURRENT_ID}`]);
  });

  it('survives a damaged record: a parent cycle or a missing parent becomes a root', () => {
    const layout = layoutSnapshotTree({
      snapshots: [node('1', '2', 0), node('2', '1', 1), node('3', '99', 2)],
      currentParentId: '3',
      currentParentInferred: false,
      current: { exclusiveBytes: 0, sharedBytes: 0 },
    });
    expect(layout.nodes).toHaveLength(4);
    expect(layout.byId.get('3')!.parentId).toBeNull();
    expect(layout.edges.filter((edge) => ['1', '2'].includes(edge.toId))).toHaveLength(1);
  });

  it('moves along the tree with the arrow keys', () => {
    const layout = layoutSnapshotTree(branchedTree());
    expect(neighbourInDirection(layout, CURRENT_ID, 'up')).toBe('4');
    expect(neighbourInDirection(layout, '4', 'left')).toBe('3');
    expect(neighbourInDirection(layout, '3', 'right')).toBe('4');
    expect(neighbourInDirection(layout, '3', 'left')).toBeNull();
    expect(neighbourInDirection(layout, '1', 'down')).toBe('2');
    expect(neighbourInDirection(layout, '1', 'up')).toBeNull();
    expect(neighbourInDirection(layout, '4', 'down')).toBe(CURRENT_ID);
  });

  // How fast is the bench's business (npm run bench -- ui-tree draws 500 snapshots in the real UI), not a timed assertion's.
  it('lays out 500 snapshots: every one once, no two on the same spot, each below its parent, all within the bounds', () => {
    const snapshots = Array.from({ length: 500 }, (_, index) => node(String(index + 1), index === 0 ? null : String(index % 7 === 0 ? index - 3 || 1 : index), index));
    const layout = layoutSnapshotTree({ snapshots, currentParentId: '500', currentParentInferred: false, current: { exclusiveBytes: 0, sharedBytes: 0 } });
    expect(layout.nodes).toHaveLength(501);
    expect(new Set(layout.nodes.map((each) => each.id)).size).toBe(501);
    expect(new Set(layout.nodes.map((each) => `${each.x},${each.y}`)).size).toBe(501);
    for (const edge of layout.edges) {
      const [from, to] = [layout.byId.get(edge.fromId), layout.byId.get(edge.toId)];
      expect(to!.depth, `${edge.fromId} → ${edge.toId}`).toBe(from!.depth + 1);
    }
    const { minX, minY, maxX, maxY } = layout.bounds;
    expect(layout.nodes.every((each) => each.x >= minX && each.x <= maxX && each.y >= minY && each.y <= maxY)).toBe(true);
  });
});
