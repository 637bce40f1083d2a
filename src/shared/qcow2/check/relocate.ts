/**
 * Repairing guest data or an L2 table that lies on top of other metadata (the header, an L1
 * table, the snapshot table, bitmaps, the encryption header) or data on top of an L2 table:
 * QEMU only raises the refcount so that a write copies the cluster away; Cowbell moves the use
 * that does not belong there to a free cluster, copying the bytes so the guest reads what it read
 * before. Crash-safe order: the new cluster's refcount, then its bytes, then the pointers; the old
 * cluster's refcount drops later, in the refcount step.
 */
import {
  ROLE_DATA,
  ROLE_HEADER,
  ROLE_L1,
  ROLE_L2,
  ROLE_OTHER_METADATA,
  ROLE_REFCOUNT_BLOCK,
  ROLE_REFCOUNT_TABLE,
} from './expected.ts';
import type { CheckFindings } from './findings.ts';
import type { ReferenceScan } from './scan.ts';
import { freeClusters, setRefcounts } from './free-space.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { view } from '../format/bytes.ts';
import { decodeL1, decodeL2, encodeL1, OFLAG_COPIED_HI } from '../format/entries.ts';
import { MAX_L1_BYTES } from '../format/limits.ts';
import type { Qcow2Image } from '../image/image.ts';

const FIXED_METADATA = ROLE_HEADER | ROLE_L1 | ROLE_OTHER_METADATA;

interface Moves {
  /** Old cluster → new cluster, and how many references will point to the new one. */
  l2: Map<number, { to: number; references: number }>;
  data: Map<number, { to: number; references: number }>;
}

/** Clusters whose L2 or data use must move; empty when the refcount structure itself overlaps (a rebuild's job). */
export function overlapsToMove(scan: ReferenceScan): { l2: number[]; data: number[] } {
  const { expected } = scan;
  const l2: number[] = [];
  const data: number[] = [];
  for (let cluster = 0; cluster < expected.compareEnd; cluster++) {
    if (!expected.overlaps(cluster)) continue;
    const roles = expected.rolesOf(cluster);
    if ((roles & (ROLE_REFCOUNT_TABLE | ROLE_REFCOUNT_BLOCK)) !== 0) continue;
    if ((roles & ROLE_L2) !== 0 && (roles & FIXED_METADATA) !== 0) l2.push(cluster);
    if ((roles & ROLE_DATA) !== 0 && (roles & (FIXED_METADATA | ROLE_L2)) !== 0) data.push(cluster);
  }
  return { l2, data };
}

/** Every L1 table: the active one and each snapshot's that check could walk. */
function l1Tables(image: Qcow2Image): { offset: number; size: number; active: boolean }[] {
  const tables = [{ offset: image.header.l1TableOffset, size: image.header.l1Size, active: true }];
  for (const snapshot of image.snapshots) {
    if (snapshot.l1TableOffset % image.clusterBytes === 0 && snapshot.l1Size <= MAX_L1_BYTES / 8 && snapshot.l1Size > 0) {
      tables.push({ offset: snapshot.l1TableOffset, size: snapshot.l1Size, active: false });
    }
  }
  return tables.filter((table) => table.size > 0 && table.offset + table.size * 8 <= image.file.size());
}

/** Moves what overlaps; returns how many clusters moved. */
export function relocateOverlaps(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings): number {
  const wanted = overlapsToMove(scan);
  if (wanted.l2.length === 0 && wanted.data.length === 0) return 0;
  const { file, clusterBytes } = image;
  const moves: Moves = { l2: new Map(), data: new Map() };
  const free = freeClusters(scan);
  const assign = (target: Map<number, { to: number; references: number }>, clusters: number[]): void => {
    for (const cluster of clusters) {
      const next = free.next();
      if (next.done === true) {
        findings.note(`ERROR no free cluster to move cluster ${cluster} to; it still overlaps other metadata`);
        return;
      }
      target.set(cluster, { to: next.value, references: 0 });
    }
  };
  assign(moves.l2, wanted.l2);
  assign(moves.data, wanted.data);
  countReferences(image, scan, moves);
  const movable = (move: { references: number }): boolean => move.references > 0 && move.references <= scan.expected.max;
  const l2Moved = new Map([...moves.l2].filter(([, move]) => movable(move)));
  const dataMoved = new Map([...moves.data].filter(([, move]) => movable(move)));
  const all = [...moves.l2.entries(), ...moves.data.entries()].filter(([, move]) => movable(move));
  if (all.length === 0) return 0;

  // 1. The new clusters' refcounts, so that nothing can allocate them once pointers exist.
  setRefcounts(image, scan, all.map(([, move]) => [move.to, move.references]));
  // 2. The bytes the guest (or the L2 lookup) read there.
  for (const [from, move] of all) file.write(readZeroFilled(file, from * clusterBytes, clusterBytes), move.to * clusterBytes);
  file.flush();
  // 3. The data pointers, before any metadata they overlap changes: in L2 tables that are only
  // L2 tables (and in the not yet linked copies of moving ones), then in those that are also data.
  const tables: { offset: number; mixed: boolean; active: boolean }[] = [];
  for (const [l2Offset, reach] of scan.l2Tables) {
    const cluster = l2Offset / clusterBytes;
    const active = reach.active > 0;
    const moved = l2Moved.get(cluster);
    if (moved !== undefined) {
      tables.push({ offset: moved.to * clusterBytes, mixed: false, active });
      continue;
    }
    // An L2 table that is also some other structure is not written, unless that other use is data moving away now.
    const roles = scan.expected.rolesOf(cluster);
    if (roles === ROLE_L2) tables.push({ offset: l2Offset, mixed: false, active });
    else if (roles === (ROLE_L2 | ROLE_DATA) && dataMoved.has(cluster)) tables.push({ offset: l2Offset, mixed: true, active });
  }
  tables.sort((a, b) => Number(a.mixed) - Number(b.mixed));
  for (const table of tables) rewriteL2(image, table.offset, dataMoved, table.active, findings);
  file.flush();
  // 4. The L1 entries, each switching to a complete copy of its L2 table in one write; not in an
  //    "L1 table" that is also other metadata (the header naming the snapshot table as its L1):
  //    writing an entry there would break that metadata. Its L2 table stays where it is.
  for (const table of l1Tables(image)) {
    if (alsoOtherMetadata(scan, image, table.offset, table.size * 8)) continue;
    rewriteL1(image, table, l2Moved, findings);
  }
  file.flush();
  return all.length;
}

/** Whether any cluster of [offset, offset + bytes) is also metadata that stays where it is (an L2 table or data there moves away). */
function alsoOtherMetadata(scan: ReferenceScan, image: Qcow2Image, offset: number, bytes: number): boolean {
  const staying = ROLE_HEADER | ROLE_OTHER_METADATA | ROLE_REFCOUNT_TABLE | ROLE_REFCOUNT_BLOCK;
  for (let cluster = Math.floor(offset / image.clusterBytes); cluster * image.clusterBytes < offset + bytes; cluster++) {
    if ((scan.expected.rolesOf(cluster) & staying) !== 0) return true;
  }
  return false;
}

function countReferences(image: Qcow2Image, scan: ReferenceScan, moves: Moves): void {
  const { file, clusterBytes } = image;
  for (const table of l1Tables(image)) {
    const l1 = view(readZeroFilled(file, table.offset, table.size * 8));
    for (let index = 0; index < table.size; index++) {
      const { l2Offset } = decodeL1(l1, index * 8);
      const move = l2Offset % clusterBytes === 0 ? moves.l2.get(l2Offset / clusterBytes) : undefined;
      if (move) move.references++;
    }
  }
  if (moves.data.size === 0) return;
  for (const [l2Offset, reach] of scan.l2Tables) {
    const table = view(readZeroFilled(file, l2Offset, clusterBytes));
    forEachMovableEntry(image, table, moves.data, (move) => {
      move.references += reach.total;
    });
  }
}

/** Normal (or preallocated zero) entries at a cluster-aligned offset in `moves`; compressed data stays. */
function forEachMovableEntry<T>(image: Qcow2Image, table: DataView, moves: Map<number, T>, visit: (move: T, position: number, hostOffset: number) => void): void {
  for (let index = 0; index < image.l2Entries; index++) {
    const position = index * image.l2EntryBytes;
    if (table.getUint32(position) === 0 && table.getUint32(position + 4) === 0) continue;
    const entry = decodeL2(table, position, image.l2Format);
    if ((entry.kind !== 'normal' && entry.kind !== 'zero') || entry.hostOffset === 0 || entry.hostOffset % image.clusterBytes !== 0) continue;
    const move = moves.get(entry.hostOffset / image.clusterBytes);
    if (move !== undefined) visit(move, position, entry.hostOffset);
  }
}

type Move = { to: number; references: number };

/** COPIED is set where the copy has exactly one reference and it is the active state's (only those flags mean anything). */
function rewriteL1(image: Qcow2Image, table: { offset: number; size: number; active: boolean }, moved: Map<number, Move>, findings: CheckFindings): void {
  if (moved.size === 0) return;
  const { file, clusterBytes } = image;
  const bytes = readZeroFilled(file, table.offset, table.size * 8);
  const l1 = view(bytes);
  for (let index = 0; index < table.size; index++) {
    const position = index * 8;
    const { l2Offset } = decodeL1(l1, position);
    const move = l2Offset % clusterBytes === 0 ? moved.get(l2Offset / clusterBytes) : undefined;
    if (move === undefined || l2Offset === 0) continue;
    const to = move.to;
    encodeL1(l1, position, to * clusterBytes, table.active && move.references === 1);
    file.write(bytes.subarray(position, position + 8), table.offset + position);
    findings.note(`Repairing L1 entry ${index} of the L1 table at 0x${table.offset.toString(16)}: its L2 table overlapped other metadata and moved from 0x${l2Offset.toString(16)} to 0x${(to * clusterBytes).toString(16)}`);
  }
}

function rewriteL2(image: Qcow2Image, l2Offset: number, moved: Map<number, Move>, active: boolean, findings: CheckFindings): void {
  if (moved.size === 0) return;
  const { file, clusterBytes } = image;
  const bytes = readZeroFilled(file, l2Offset, clusterBytes);
  const table = view(bytes);
  let changed = false;
  forEachMovableEntry(image, table, moved, (move, position, hostOffset) => {
    const high = table.getUint32(position);
    const low = table.getUint32(position + 4);
    const newOffset = move.to * clusterBytes;
    const copied = active && move.references === 1 ? OFLAG_COPIED_HI : 0;
    // The offset changes, COPIED says whether the copy is shared; the other flag bits stay.
    table.setUint32(position, ((high & 0x7f00_0000) | copied | Math.floor(newOffset / 0x1_0000_0000)) >>> 0);
    table.setUint32(position + 4, ((low & 0x1ff) | (newOffset >>> 0)) >>> 0);
    findings.note(`Repairing L2 entry in the L2 table at 0x${l2Offset.toString(16)}: its cluster overlapped other metadata and moved from 0x${hostOffset.toString(16)} to 0x${newOffset.toString(16)}`);
    changed = true;
  });
  if (changed) file.write(bytes, l2Offset);
}
