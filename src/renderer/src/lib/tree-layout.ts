/**
 * The snapshot tree as a picture: positions for every snapshot and for the current state ("You are
 * here"), and the edges between them, laid out by d3-hierarchy's tidy tree. Time runs downward:
 * each snapshot sits below its parent; branches after a revert spread sideways.
 */
import { hierarchy, tree as tidyTree } from 'd3-hierarchy';
import type { SnapshotTree } from '../../../shared/ipc/contract.ts';
import type { SnapshotNode } from '../../../shared/qcow2/model.ts';

/** The id the current state goes by in the layout; no snapshot id can take it (they are numbers in qcow2). */
export const CURRENT_ID = 'current';

export interface LayoutNode {
  id: string;
  kind: 'snapshot' | 'current';
  /** The snapshot this node draws; null for the current state. */
  snapshot: SnapshotNode | null;
  /** Centre of the node's dot, in layout units (pixels at zoom 1). */
  x: number;
  y: number;
  depth: number;
  parentId: string | null;
  childIds: string[];
}

export interface LayoutEdge {
  fromId: string;
  toId: string;
  /** The parent was inferred, not recorded: drawn dashed, with the reason as tooltip. */
  inferred: boolean;
  reason: string | null;
  /** A placeholder parent of the quick tree, until the full tree decides it. */
  pending: boolean;
  /** SVG path data from the parent's dot to the child's. */
  path: string;
}

export interface TreeLayout {
  nodes: LayoutNode[];
  edges: LayoutEdge[];
  byId: Map<string, LayoutNode>;
  /** Every node's dot lies within these bounds; labels extend `labelWidth` to the right. */
  bounds: { minX: number; minY: number; maxX: number; maxY: number };
}

export interface TreeLayoutOptions {
  /** Horizontal distance between sibling columns (room for a label beside each dot). */
  columnWidth?: number;
  rowHeight?: number;
}

interface Datum {
  id: string;
  children: Datum[];
}

const ROOT_ID = '\u0000root';

export function layoutSnapshotTree(snapshotTree: SnapshotTree, options: TreeLayoutOptions = {}): TreeLayout {
  const columnWidth = options.columnWidth ?? 220;
  const rowHeight = options.rowHeight ?? 64;
  const snapshotsById = new Map(snapshotTree.snapshots.map((snapshot) => [snapshot.id, snapshot]));

  // The current state hangs under its parent like a snapshot would; it is always the newest child.
  const parentOf = new Map<string, string | null>();
  for (const snapshot of snapshotTree.snapshots) {
    const parentId = snapshot.parentId !== null && snapshotsById.has(snapshot.parentId) && snapshot.parentId !== snapshot.id ? snapshot.parentId : null;
    parentOf.set(snapshot.id, parentId);
  }
  const currentParent = snapshotTree.currentParentId !== null && snapshotsById.has(snapshotTree.currentParentId) ? snapshotTree.currentParentId : null;
  parentOf.set(CURRENT_ID, currentParent);

  const data = new Map<string, Datum>([[ROOT_ID, { id: ROOT_ID, children: [] }]]);
  for (const id of parentOf.keys()) data.set(id, { id, children: [] });
  const order = (id: string): number => (id === CURRENT_ID ? Number.POSITIVE_INFINITY : Date.parse(snapshotsById.get(id)?.date ?? '') || 0);

  // Attach children from the roots down, so a cycle of parent ids (a damaged record) cannot be
  // followed forever: what no root reaches is attached to the root instead.
  const childrenOf = new Map<string, string[]>();
  for (const [id, parentId] of parentOf) {
    const key = parentId ?? ROOT_ID;
    childrenOf.set(key, [...(childrenOf.get(key) ?? []), id]);
  }
  const attached = new Set<string>([ROOT_ID]);
  const attachBelow = (startId: string): void => {
    const stack = [startId];
    while (stack.length > 0) {
      const id = stack.pop() as string;
      const children = (childrenOf.get(id) ?? []).filter((child) => !attached.has(child)).sort((a, b) => order(a) - order(b));
      for (const child of children) {
        attached.add(child);
        data.get(id)?.children.push(data.get(child) as Datum);
        stack.push(child);
      }
    }
  };
  attachBelow(ROOT_ID);
  for (const id of parentOf.keys()) {
    if (attached.has(id)) continue;
    parentOf.set(id, null);
    attached.add(id);
    data.get(ROOT_ID)?.children.push(data.get(id) as Datum);
    attachBelow(id);
  }

  const root = hierarchy(data.get(ROOT_ID) as Datum, (datum) => datum.children);
  const laidOut = tidyTree<Datum>()
    .nodeSize([columnWidth, rowHeight])
    .separation((a, b) => (a.parent === b.parent ? 1 : 1.15))(root);

  const nodes: LayoutNode[] = [];
  const byId = new Map<string, LayoutNode>();
  const bounds = { minX: Number.POSITIVE_INFINITY, minY: Number.POSITIVE_INFINITY, maxX: Number.NEGATIVE_INFINITY, maxY: Number.NEGATIVE_INFINITY };
  laidOut.each((point) => {
    const id = point.data.id;
    if (id === ROOT_ID) return;
    const parentId = parentOf.get(id) ?? null;
    const node: LayoutNode = {
      id,
      kind: id === CURRENT_ID ? 'current' : 'snapshot',
      snapshot: snapshotsById.get(id) ?? null,
      x: point.x,
      y: point.y - rowHeight,
      depth: point.depth - 1,
      parentId,
      childIds: (point.children ?? []).map((child) => child.data.id),
    };
    nodes.push(node);
    byId.set(id, node);
    bounds.minX = Math.min(bounds.minX, node.x);
    bounds.maxX = Math.max(bounds.maxX, node.x);
    bounds.minY = Math.min(bounds.minY, node.y);
    bounds.maxY = Math.max(bounds.maxY, node.y);
  });

  const edges: LayoutEdge[] = [];
  for (const node of nodes) {
    if (node.parentId === null) continue;
    const parent = byId.get(node.parentId);
    if (!parent) continue;
    const inferred = node.kind === 'current' ? snapshotTree.currentParentInferred : (node.snapshot?.parentInferred ?? false);
    const reason = node.kind === 'current' ? (snapshotTree.currentParentReason ?? null) : (node.snapshot?.parentReason ?? null);
    const pending = node.kind === 'current' ? snapshotTree.currentParentPending === true : node.snapshot?.parentPending === true;
    edges.push({ fromId: parent.id, toId: node.id, inferred, reason: inferred ? reason : null, pending, path: edgePath(parent, node) });
  }
  if (nodes.length === 0) Object.assign(bounds, { minX: 0, minY: 0, maxX: 0, maxY: 0 });
  return { nodes, edges, byId, bounds };
}

/** A vertical S-curve from the parent's dot down to the child's. */
function edgePath(from: LayoutNode, to: LayoutNode): string {
  const middleY = (from.y + to.y) / 2;
  if (from.x === to.x) return `M${from.x},${from.y}V${to.y}`;
  return `M${from.x},${from.y}C${from.x},${middleY} ${to.x},${middleY} ${to.x},${to.y}`;
}

export type TreeDirection = 'up' | 'down' | 'left' | 'right';

/**
 * Where an arrow key goes from `id`: up to the parent, down to the child nearest below, left and
 * right to the nearest node in the same row (siblings first, then cousins).
 */
export function neighbourInDirection(layout: TreeLayout, id: string, direction: TreeDirection): string | null {
  const node = layout.byId.get(id);
  if (!node) return layout.nodes[0]?.id ?? null;
  if (direction === 'up') return node.parentId;
  if (direction === 'down') {
    const children = node.childIds.map((childId) => layout.byId.get(childId)).filter((child): child is LayoutNode => child !== undefined);
    children.sort((a, b) => Math.abs(a.x - node.x) - Math.abs(b.x - node.x));
    return children[0]?.id ?? null;
  }
  const sign = direction === 'right' ? 1 : -1;
  let best: LayoutNode | null = null;
  for (const candidate of layout.nodes) {
    if (candidate.depth !== node.depth || (candidate.x - node.x) * sign <= 0) continue;
    if (best === null || Math.abs(candidate.x - node.x) < Math.abs(best.x - node.x)) best = candidate;
  }
  return best?.id ?? null;
}
