/**
 * The snapshot tree: each snapshot's parent and the parent of the current state ("you are here").
 * Cowbell records parents it knows in each snapshot's extra data (format/cowbell-record.ts). For
 * snapshots made elsewhere the parent is inferred from the L2 tables two states share, then from
 * dates; the result says which parents are inferred and why.
 */
import { readCowbellRecord } from './format/cowbell-record.ts';
import type { SnapshotEntry } from './format/snapshot-table.ts';
import type { L1Table, Qcow2Image } from './image.ts';
import { silentJob, type JobContext } from './job-context.ts';
import type { SnapshotNode, SnapshotTree } from './model.ts';
import { UsageCalculator } from './usage.ts';

export interface ParentChoice {
  parentId: string | null;
  inferred: boolean;
  reason?: string;
}

/** Snapshots in the order they were taken (date, then numeric id). */
export function chronological(entries: SnapshotEntry[]): SnapshotEntry[] {
  return [...entries].sort((a, b) => a.dateSec - b.dateSec || a.dateNsec - b.dateNsec || compareIds(a.id, b.id));
}

function compareIds(a: string, b: string): number {
  const numberA = Number.parseInt(a, 10);
  const numberB = Number.parseInt(b, 10);
  if (Number.isSafeInteger(numberA) && Number.isSafeInteger(numberB) && numberA !== numberB) return numberA - numberB;
  return a < b ? -1 : a > b ? 1 : 0;
}

/** L2 table offsets an L1 names, by L1 index (0 where none). */
function l2Offsets(image: Qcow2Image, l1: L1Table): number[] {
  const offsets: number[] = [];
  for (let index = 0; index < l1.size; index++) offsets.push(image.l2OffsetAt(l1, index));
  return offsets;
}

function sharedTables(a: number[], b: number[]): number {
  let count = 0;
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) if (a[index] !== 0 && a[index] === b[index]) count++;
  return count;
}

function identical(a: number[], b: number[]): boolean {
  const length = Math.max(a.length, b.length);
  for (let index = 0; index < length; index++) if ((a[index] ?? 0) !== (b[index] ?? 0)) return false;
  return true;
}

function latest(entries: SnapshotEntry[]): SnapshotEntry | undefined {
  return chronological(entries).at(-1);
}

export interface TreeInputs {
  image: Qcow2Image;
  ordered: SnapshotEntry[];
  tables: Map<string, number[]>;
  active: number[];
}

function loadInputs(image: Qcow2Image, job: JobContext): TreeInputs {
  const tables = new Map<string, number[]>();
  for (const snapshot of image.snapshots) {
    job.throwIfCancelled();
    tables.set(snapshot.id, l2Offsets(image, image.loadSnapshotL1(snapshot)));
  }
  return { image, ordered: chronological(image.snapshots), tables, active: l2Offsets(image, image.l1) };
}

function bestBySharing(candidates: SnapshotEntry[], tablesOf: (entry: SnapshotEntry) => number[], target: number[]): { entry: SnapshotEntry; shared: number } | null {
  let best: { entry: SnapshotEntry; shared: number } | null = null;
  for (const candidate of candidates) {
    const shared = sharedTables(tablesOf(candidate), target);
    // Candidates are chronological: on a tie the later one wins.
    if (shared > 0 && (best === null || shared >= best.shared)) best = { entry: candidate, shared };
  }
  return best;
}

export function snapshotParent(inputs: TreeInputs, snapshot: SnapshotEntry): ParentChoice {
  const record = readCowbellRecord(snapshot);
  const ids = new Set(inputs.ordered.map((entry) => entry.id));
  if (record?.parentKnown) {
    if (record.parentId === '') return { parentId: null, inferred: false };
    if (ids.has(record.parentId)) return { parentId: record.parentId, inferred: false };
  }
  const position = inputs.ordered.indexOf(snapshot);
  const older = inputs.ordered.slice(0, Math.max(0, position));
  const why = record?.parentKnown ? 'its recorded parent was deleted by another program; ' : '';
  if (older.length === 0) return { parentId: null, inferred: record?.parentKnown ?? false, reason: record?.parentKnown ? `${why}no older snapshot remains` : undefined };
  const tablesOf = (entry: SnapshotEntry): number[] => inputs.tables.get(entry.id) ?? [];
  const best = bestBySharing(older, tablesOf, tablesOf(snapshot));
  if (best !== null) {
    return { parentId: best.entry.id, inferred: true, reason: `${why}it shares ${best.shared} L2 table${best.shared === 1 ? '' : 's'} with "${best.entry.name}", more than with any older snapshot` };
  }
  const previous = older.at(-1);
  return { parentId: previous?.id ?? null, inferred: true, reason: `${why}no shared data to go by; "${previous?.name ?? ''}" is the snapshot taken just before it` };
}

export function currentParent(inputs: TreeInputs): ParentChoice {
  const { image, ordered, tables, active } = inputs;
  if (ordered.length === 0) return { parentId: null, inferred: false };
  const tablesOf = (entry: SnapshotEntry): number[] => tables.get(entry.id) ?? [];
  const flagged = ordered.find((entry) => {
    const record = readCowbellRecord(entry);
    return record?.currentParent === true && record.activeL1Offset === image.l1.offset;
  });
  const flaggedRecord = flagged ? readCowbellRecord(flagged) : null;
  const sinceSec = flaggedRecord?.currentSinceSec ?? 0;
  const sinceNsec = flaggedRecord?.currentSinceNsec ?? 0;
  // A snapshot another program took after Cowbell marked the parent makes the mark stale.
  const foreignLater = ordered.some(
    (entry) => readCowbellRecord(entry) === null && (entry.dateSec > sinceSec || (entry.dateSec === sinceSec && entry.dateNsec >= sinceNsec)),
  );
  const flagValid = flagged !== undefined && !foreignLater;

  const exact = ordered.filter((entry) => identical(tablesOf(entry), active) && active.some((offset) => offset !== 0));
  if (exact.length > 0) {
    if (flagValid && exact.includes(flagged)) return { parentId: flagged.id, inferred: false };
    const chosen = latest(exact);
    return { parentId: chosen?.id ?? null, inferred: true, reason: `the current state is still identical to "${chosen?.name ?? ''}"` };
  }
  const best = bestBySharing(ordered, tablesOf, active);
  if (flagValid && (best === null || sharedTables(tablesOf(flagged), active) >= best.shared)) return { parentId: flagged.id, inferred: false };
  if (best !== null) {
    return { parentId: best.entry.id, inferred: true, reason: `the current state shares ${best.shared} L2 table${best.shared === 1 ? '' : 's'} with "${best.entry.name}", more than with any other snapshot` };
  }
  const newest = latest(ordered);
  return { parentId: newest?.id ?? null, inferred: true, reason: `no shared data to go by; "${newest?.name ?? ''}" is the most recent snapshot` };
}

/** The current state's parent id (what a new snapshot records as its parent). */
export function currentParentId(image: Qcow2Image): string | null {
  return currentParent(loadInputs(image, silentJob)).parentId;
}

function isoDate(entry: SnapshotEntry): string {
  return new Date(entry.dateSec * 1000 + Math.floor(entry.dateNsec / 1_000_000)).toISOString();
}

export function snapshotTree(image: Qcow2Image, job: JobContext = silentJob): SnapshotTree {
  const inputs = loadInputs(image, job);
  const calculator = new UsageCalculator(image, job);
  const snapshots: SnapshotNode[] = inputs.ordered.map((entry) => {
    job.throwIfCancelled();
    const parent = snapshotParent(inputs, entry);
    const usage = calculator.l1Usage(image.loadSnapshotL1(entry), true);
    const node: SnapshotNode = {
      id: entry.id,
      name: entry.name,
      parentId: parent.parentId,
      parentInferred: parent.inferred,
      date: isoDate(entry),
      vmClock: Number(entry.vmClockNsec),
      vmStateSize: Number(entry.vmStateSizeLarge ?? BigInt(entry.vmStateSize32)),
      exclusiveBytes: usage.exclusiveBytes,
      sharedBytes: usage.sharedBytes,
    };
    if (parent.reason !== undefined) node.parentReason = parent.reason;
    return node;
  });
  const current = currentParent(inputs);
  const currentUsage = calculator.l1Usage(image.l1, false);
  const tree: SnapshotTree = {
    snapshots,
    currentParentId: current.parentId,
    currentParentInferred: current.inferred,
    current: currentUsage,
  };
  if (current.reason !== undefined) tree.currentParentReason = current.reason;
  return tree;
}
