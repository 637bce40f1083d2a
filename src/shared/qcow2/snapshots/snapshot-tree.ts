/**
 * The snapshot tree: each snapshot's parent and the parent of the current state ("you are here").
 * Cowbell records parents it knows in each snapshot's extra data (format/cowbell-record.ts). For
 * snapshots made elsewhere the parent is the older snapshot whose mapping differs from it in the
 * fewest guest clusters (what was written between them), the later one on a tie (dates); the
 * result says which parents are inferred and why. The quick tree (snapshot-outline.ts) has no
 * distances: a parent that needs them is a placeholder there, marked pending.
 */
import { l1Checksum, readCowbellRecord } from '../format/cowbell-record.ts';
import { snapshotIsoDate, type SnapshotEntry } from '../format/snapshot-table.ts';
import type { Qcow2Image } from '../image/image.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { MappingPass } from './mapping-pass.ts';
import type { SnapshotNode, SnapshotTree } from '../model.ts';
import { mappedStates } from './usage.ts';

/** Why a parent a rewrite recorded is still shown as a guess. */
const RECORDED_GUESS = 'Cowbell guessed it from the data before the disk was rewritten (compressed, compacted or copied), and the rewritten disk keeps that guess';

export interface ParentChoice {
  parentId: string | null;
  inferred: boolean;
  reason?: string;
  /** A placeholder until the mapping pass decides (the quick tree): the likeliest parent, inferred as the pass would be. */
  pending?: true;
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

function latest(entries: SnapshotEntry[]): SnapshotEntry | undefined {
  return chronological(entries).at(-1);
}

export interface TreeInputs {
  ordered: SnapshotEntry[];
  /** The header's active L1 table offset (Cowbell's mark names it). */
  activeL1Offset: number;
  /** The active L1 table's bytes; null in the quick tree, which reads no table. */
  activeL1: Uint8Array | null;
  /** Guest clusters mapped differently by a snapshot and another state (null: the current state); null in the quick tree. */
  distance: ((snapshot: SnapshotEntry, other: SnapshotEntry | null) => number) | null;
  /** Set (to the number of states) where there were too many to compare every two (MAX_COMPARED_STATES): parents go by date. */
  uncompared?: number;
  /** With `uncompared`: the snapshots whose L1 table maps exactly what the current one does (an apply since, by any program). */
  identicalToCurrent?: ReadonlySet<string>;
}

/** The snapshots whose L1 table names the current one's L2 tables (one whose table cannot be read is none of them). */
function snapshotsLikeCurrent(image: Qcow2Image): Set<string> {
  const ids = new Set<string>();
  for (const snapshot of image.snapshots) {
    try {
      if (sameL1(image.loadSnapshotL1(snapshot).bytes, image.l1.bytes)) ids.add(snapshot.id);
    } catch {
      // Its table is damaged: check says so; the tree goes on without it.
    }
  }
  return ids;
}

/** Whether two L1 tables name the same L2 tables (COPIED flags aside; a shorter one reads as unallocated past its end). */
function sameL1(a: Uint8Array, b: Uint8Array): boolean {
  const length = Math.max(a.length, b.length);
  for (let index = 0; index < length; index++) {
    // The top bit of each entry's first (big-endian) byte is COPIED.
    const mask = index % 8 === 0 ? 0x7f : 0xff;
    if (((a[index] ?? 0) & mask) !== ((b[index] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * Comparing every two states' mappings costs about count² × the clusters where they differ; past
 * this many (a disk few hobbyists reach) parents are taken by date instead, which is what they are
 * unless snapshots were reverted to in between.
 */
export const MAX_COMPARED_STATES = 500;

const CURRENT_STATE = 0;

/** Reads every state's mappings once: the distances between states, and their space figures when `usage`. */
function loadInputs(image: Qcow2Image, job: JobContext, usage: boolean): TreeInputs & { pass: MappingPass; state: Map<string, number> } {
  let largestDisk = image.virtualSize;
  for (const snapshot of image.snapshots) largestDisk = Math.max(largestDisk, snapshot.diskSize ?? 0);
  const states = mappedStates(image);
  job.throwIfCancelled();
  const compare = states.length <= MAX_COMPARED_STATES;
  const pass = new MappingPass(image, states, { usage, distances: compare, guestClusters: Math.ceil(largestDisk / image.clusterBytes), job }).run();
  const state = new Map(image.snapshots.map((snapshot, index) => [snapshot.id, index + 1]));
  const stateOf = (entry: SnapshotEntry | null): number => (entry === null ? CURRENT_STATE : (state.get(entry.id) ?? CURRENT_STATE));
  return {
    ordered: chronological(image.snapshots),
    activeL1Offset: image.l1.offset,
    activeL1: image.l1.bytes,
    distance: compare ? (snapshot, other) => pass.distance(stateOf(snapshot), stateOf(other)) : null,
    ...(compare ? {} : { uncompared: states.length, identicalToCurrent: snapshotsLikeCurrent(image) }),
    pass,
    state,
  };
}

function distance(inputs: TreeInputs, snapshot: SnapshotEntry, other: SnapshotEntry | null): number {
  return inputs.distance?.(snapshot, other) ?? 0;
}

interface Closest {
  entry: SnapshotEntry;
  clusters: number;
  /** How many candidates were as close. */
  ties: number;
}

/** The candidate whose mapping differs least from `target`; candidates are chronological, so on a tie the later one wins. */
function closest(inputs: TreeInputs, candidates: SnapshotEntry[], target: SnapshotEntry | null): Closest | null {
  let best: Closest | null = null;
  for (const candidate of candidates) {
    const clusters = distance(inputs, candidate, target);
    if (best === null || clusters < best.clusters) best = { entry: candidate, clusters, ties: 1 };
    else if (clusters === best.clusters) best = { entry: candidate, clusters, ties: best.ties + 1 };
  }
  return best;
}

/** "closest older snapshot: "s1" (4 clusters differ)", naming the tie when there is one. */
function closeness(best: Closest, kind: string): string {
  const differ = best.clusters === 0 ? 'no cluster differs' : `${best.clusters} cluster${best.clusters === 1 ? ' differs' : 's differ'}`;
  if (best.ties === 1) return `closest ${kind}: "${best.entry.name}" (${differ})`;
  return `closest ${kind}s: "${best.entry.name}" and ${best.ties - 1} other${best.ties === 2 ? '' : 's'} (${differ}); "${best.entry.name}" is the latest`;
}

/** Each input's snapshot ids, made once (snapshotParent runs for every snapshot). */
const idSets = new WeakMap<SnapshotEntry[], Set<string>>();

function idsOf(ordered: SnapshotEntry[]): Set<string> {
  let ids = idSets.get(ordered);
  if (ids === undefined) {
    ids = new Set(ordered.map((entry) => entry.id));
    idSets.set(ordered, ids);
  }
  return ids;
}

export function snapshotParent(inputs: TreeInputs, snapshot: SnapshotEntry): ParentChoice {
  const record = readCowbellRecord(snapshot);
  const ids = idsOf(inputs.ordered);
  if (record?.parentKnown) {
    const inferred = record.parentInferred === true;
    const reason = inferred ? RECORDED_GUESS : undefined;
    if (record.parentId === '') return { parentId: null, inferred, reason };
    if (ids.has(record.parentId)) return { parentId: record.parentId, inferred, reason };
  }
  const position = inputs.ordered.indexOf(snapshot);
  const why = record?.parentKnown ? 'its recorded parent was deleted by another program; ' : '';
  if (position <= 0) return { parentId: null, inferred: record?.parentKnown ?? false, reason: record?.parentKnown ? `${why}no older snapshot remains` : undefined };
  const previous = inputs.ordered[position - 1];
  if (inputs.uncompared !== undefined && previous !== undefined) {
    return { parentId: previous.id, inferred: true, reason: `${why}"${previous.name}", the snapshot before it (with ${inputs.uncompared} states, their mappings are not compared)` };
  }
  const older = inputs.ordered.slice(0, position);
  if (inputs.distance === null && older.length > 1 && previous !== undefined) {
    return { parentId: previous.id, inferred: true, reason: `${why}"${previous.name}", the snapshot before it, until the mappings are compared`, pending: true };
  }
  const best = closest(inputs, older, snapshot);
  if (best === null) return { parentId: null, inferred: true, reason: `${why}no older snapshot remains` };
  const reason = older.length === 1 ? `"${best.entry.name}" is the only older snapshot` : closeness(best, 'older snapshot');
  return { parentId: best.entry.id, inferred: true, reason: `${why}${reason}` };
}

export function currentParent(inputs: TreeInputs): ParentChoice {
  const { ordered } = inputs;
  if (ordered.length === 0) return { parentId: null, inferred: false };
  const flagged = ordered.find((entry) => {
    const record = readCowbellRecord(entry);
    return record?.currentParent === true && record.activeL1Offset === inputs.activeL1Offset;
  });
  const flaggedRecord = flagged ? readCowbellRecord(flagged) : null;
  const sinceSec = flaggedRecord?.currentSinceSec ?? 0;
  const sinceNsec = flaggedRecord?.currentSinceNsec ?? 0;
  // A snapshot another program took after Cowbell marked the parent makes the mark stale. Cowbell
  // records a parent for every snapshot it takes; one it only gave a note to stays another program's.
  const foreignLater = ordered.some(
    (entry) => entry !== flagged && readCowbellRecord(entry)?.parentKnown !== true && (entry.dateSec > sinceSec || (entry.dateSec === sinceSec && entry.dateNsec >= sinceNsec)),
  );
  const flagValid = flagged !== undefined && !foreignLater;
  const fromFlag = (id: string): ParentChoice => (flaggedRecord?.currentInferred === true ? { parentId: id, inferred: true, reason: RECORDED_GUESS } : { parentId: id, inferred: false });
  // The current L1 table is as it was when the mark was set: no apply in place and no copy on write since.
  if (flagValid && inputs.activeL1 !== null && flaggedRecord?.activeL1Checksum !== undefined && flaggedRecord.activeL1Checksum === l1Checksum(inputs.activeL1)) return fromFlag(flagged.id);
  if (inputs.uncompared !== undefined) {
    // The current tables changed since Cowbell's mark: an apply (by any program) leaves them exactly a snapshot's.
    const exact = ordered.filter((entry) => inputs.identicalToCurrent?.has(entry.id) === true);
    if (exact.length > 0) {
      if (flagValid && exact.includes(flagged)) return fromFlag(flagged.id);
      const chosen = latest(exact);
      return { parentId: chosen?.id ?? null, inferred: true, reason: `the current state is still identical to "${chosen?.name ?? ''}"` };
    }
    if (flagValid) return { parentId: flagged.id, inferred: true, reason: `"${flagged.name}", where Cowbell last saw it (with ${inputs.uncompared} states, the writes since are not compared)` };
    const newest = latest(ordered);
    return { parentId: newest?.id ?? null, inferred: true, reason: `"${newest?.name ?? ''}", the newest snapshot (with ${inputs.uncompared} states, their mappings are not compared)` };
  }
  if (inputs.distance === null) {
    // Without the pass, Cowbell's mark stands unless another program's apply made another snapshot closer (rare).
    if (flagValid) return { ...fromFlag(flagged.id), pending: true };
    const newest = latest(ordered);
    return { parentId: newest?.id ?? null, inferred: true, reason: `"${newest?.name ?? ''}", the newest snapshot, until the mappings are compared`, pending: true };
  }
  // Nothing written since Cowbell's mark: no need to look at the other snapshots.
  if (flagValid && distance(inputs, flagged, null) === 0) return fromFlag(flagged.id);

  const exact = ordered.filter((entry) => distance(inputs, entry, null) === 0);
  if (exact.length > 0) {
    if (flagValid && exact.includes(flagged)) return fromFlag(flagged.id);
    const chosen = latest(exact);
    return { parentId: chosen?.id ?? null, inferred: true, reason: `the current state is still identical to "${chosen?.name ?? ''}"` };
  }
  const best = closest(inputs, ordered, null);
  // Writes since Cowbell's mark only move the state away from every snapshot alike; another
  // program's apply (in place, same L1 offset) makes another snapshot closer.
  if (flagValid && (best === null || distance(inputs, flagged, null) <= best.clusters)) return fromFlag(flagged.id);
  if (best === null) return { parentId: null, inferred: false };
  return { parentId: best.entry.id, inferred: true, reason: closeness(best, 'snapshot') };
}

/** Every snapshot's parent and the current state's, as the tree shows them (without the space figures). */
export function treeParents(image: Qcow2Image, job: JobContext = silentJob): { parents: Map<string, ParentChoice>; current: ParentChoice } {
  const inputs = loadInputs(image, job, false);
  const parents = new Map<string, ParentChoice>();
  for (const entry of inputs.ordered) {
    job.throwIfCancelled();
    parents.set(entry.id, snapshotParent(inputs, entry));
  }
  return { parents, current: currentParent(inputs) };
}

/** The current state's parent id (what a new snapshot records as its parent). */
export function currentParentId(image: Qcow2Image): string | null {
  return currentParent(loadInputs(image, silentJob, false)).parentId;
}

/** A state's space figures, or null where they are not counted (the quick tree). */
type Figures = (entry: SnapshotEntry | null) => { exclusiveBytes: number | null; sharedBytes: number | null };

/** The tree as shown: each snapshot's fields from the snapshot table and Cowbell's record, parents, and `figures`. */
export function buildTree(inputs: TreeInputs, virtualSize: number, figures: Figures, job: JobContext = silentJob): SnapshotTree {
  const snapshots: SnapshotNode[] = inputs.ordered.map((entry) => {
    job.throwIfCancelled();
    const parent = snapshotParent(inputs, entry);
    const node: SnapshotNode = {
      id: entry.id,
      name: entry.name,
      parentId: parent.parentId,
      parentInferred: parent.inferred,
      date: snapshotIsoDate(entry),
      vmClock: Number(entry.vmClockNsec),
      vmStateSize: Number(entry.vmStateSizeLarge ?? BigInt(entry.vmStateSize32)),
      // A version 2 entry has no disk size: QEMU takes the image's.
      diskSize: entry.diskSize ?? virtualSize,
      ...figures(entry),
    };
    if (parent.reason !== undefined) node.parentReason = parent.reason;
    if (parent.pending === true) node.parentPending = true;
    const note = readCowbellRecord(entry)?.note;
    if (note !== undefined && note !== '') node.note = note;
    return node;
  });
  const current = currentParent(inputs);
  const tree: SnapshotTree = {
    snapshots,
    currentParentId: current.parentId,
    currentParentInferred: current.inferred,
    current: figures(null),
  };
  if (current.reason !== undefined) tree.currentParentReason = current.reason;
  if (current.pending === true) tree.currentParentPending = true;
  return tree;
}

export function snapshotTree(image: Qcow2Image, job: JobContext = silentJob): SnapshotTree {
  const inputs = loadInputs(image, job, true);
  return buildTree(inputs, image.virtualSize, (entry) => inputs.pass.usage(entry === null ? CURRENT_STATE : (inputs.state.get(entry.id) ?? CURRENT_STATE)), job);
}
