/**
 * The crash tests' own referee, independent of the engine's bookkeeping: it walks an image the
 * way `qemu-img check` does (every L1 table, active and snapshots; every L2 table they reach;
 * every cluster those name), counts references per host cluster, and compares them with the
 * on-disk refcounts and with the COPIED flags of the active tables. It reuses only the pure
 * format decoders. Fast enough to run on every crash state; qemu-img check runs beside it.
 */
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { view } from '../../../src/shared/qcow2/format/bytes.ts';
import { decodeL1, decodeL2, decodeRefcountTableEntry, getRefcount, l2EntryBytes, type L2Format } from '../../../src/shared/qcow2/format/entries.ts';
import { extendedL2, parseHeader, type Header } from '../../../src/shared/qcow2/format/header.ts';
import { parseSnapshotTable, snapshotTableLength } from '../../../src/shared/qcow2/format/snapshot-table.ts';

export type FindingKind =
  /** More references than the refcount says: a writer may reuse or change a cluster still in use. */
  | 'refcount-below-references'
  /** COPIED set where the refcount is not 1: a writer changes a shared cluster in place. */
  | 'copied-on-shared'
  /** A table the walk cannot read (past the end of the file, unaligned, unparsable). */
  | 'unreadable'
  /** Harmless: COPIED missing on a cluster whose refcount is 1 (one extra copy on the next write). */
  | 'copied-missing'
  /** Harmless: refcount above the references (space lost until a repair). */
  | 'leak';

export const HARMLESS: ReadonlySet<FindingKind> = new Set<FindingKind>(['copied-missing', 'leak']);

export interface Finding {
  kind: FindingKind;
  message: string;
}

export interface WalkReport {
  findings: Finding[];
  /** The findings that are not harmless. */
  harmful: Finding[];
  /** Active L1 entries with COPIED set whose L2 table's refcount is 2 or more (QEMU 7.2's interrupted apply). */
  staleCopiedL1Entries: number;
}

export interface WalkOptions {
  /**
   * Count references and compare them with the refcounts (default). Without it only the COPIED
   * flags of the active tables are checked: enough, and much faster, on a 100 MiB image.
   */
  countReferences?: boolean;
}

interface Walk {
  countReferences: boolean;
  file: BlockFile;
  header: Header;
  clusterBytes: number;
  fileSize: number;
  /** References per host cluster inside the file; `referencesPastEnd` for clusters beyond it. */
  references: Uint32Array;
  referencesPastEnd: Map<number, number>;
  findings: Finding[];
  refcountTable: DataView;
  refcountBlocks: Map<number, { bytes: Uint8Array; view: DataView } | null>;
  entriesPerBlock: number;
}

export function walkImage(file: BlockFile, options: WalkOptions = {}): WalkReport {
  const fileSize = file.size();
  // The header and its extensions live in the first cluster: read that much, not the 2 MiB maximum.
  const probe = new Uint8Array(24);
  file.read(probe, 0);
  const probedBits = view(probe).getUint32(20);
  const first = new Uint8Array(Math.min(fileSize, 2 ** Math.min(Math.max(probedBits, 9), 21)));
  file.read(first, 0);
  const header = parseHeader(first, fileSize);
  const clusterBytes = 2 ** header.clusterBits;
  const tableBytes = new Uint8Array(header.refcountTableClusters * clusterBytes);
  const walk: Walk = {
    countReferences: options.countReferences ?? true,
    file,
    header,
    clusterBytes,
    fileSize,
    references: new Uint32Array(Math.ceil(fileSize / clusterBytes)),
    referencesPastEnd: new Map(),
    findings: [],
    refcountTable: view(tableBytes),
    refcountBlocks: new Map(),
    entriesPerBlock: (clusterBytes * 8) / 2 ** header.refcountOrder,
  };
  if (file.read(tableBytes, header.refcountTableOffset) < tableBytes.length) unreadable(walk, `refcount table at ${header.refcountTableOffset} is past the end of the file`);

  reference(walk, 0, clusterBytes);
  reference(walk, header.refcountTableOffset, tableBytes.length);
  for (let index = 0; index < tableBytes.length / 8; index++) {
    const { blockOffset } = decodeRefcountTableEntry(walk.refcountTable, index * 8);
    if (blockOffset !== 0) reference(walk, blockOffset, clusterBytes);
  }
  const format: L2Format = { clusterBits: header.clusterBits, extendedL2: extendedL2(header) };
  const activeL1 = readTable(walk, header.l1TableOffset, header.l1Size * 8, 'active L1 table');
  reference(walk, header.l1TableOffset, header.l1Size * 8);
  const visitedByActive = walkL1(walk, activeL1, format);

  if (walk.countReferences && header.snapshotCount > 0) {
    const tableLength = Math.max(0, Math.min(fileSize - header.snapshotsOffset, 64 * 1024 * 1024));
    const snapshotBytes = new Uint8Array(tableLength);
    file.read(snapshotBytes, header.snapshotsOffset);
    try {
      const entries = parseSnapshotTable(snapshotBytes, header.snapshotCount, header.version);
      reference(walk, header.snapshotsOffset, snapshotTableLength(snapshotBytes, header.snapshotCount));
      for (const entry of entries) {
        const l1 = readTable(walk, entry.l1TableOffset, entry.l1Size * 8, `snapshot ${entry.name}'s L1 table`);
        reference(walk, entry.l1TableOffset, entry.l1Size * 8);
        walkL1(walk, l1, format);
      }
    } catch (error) {
      unreadable(walk, `snapshot table: ${(error as Error).message}`);
    }
  }

  if (walk.countReferences) compareRefcounts(walk);
  const staleCopiedL1Entries = checkCopiedFlags(walk, activeL1, visitedByActive, format);
  const harmful = walk.findings.filter((finding) => !HARMLESS.has(finding.kind));
  return { findings: walk.findings, harmful, staleCopiedL1Entries };
}

function unreadable(walk: Walk, message: string): void {
  walk.findings.push({ kind: 'unreadable', message });
}

function reference(walk: Walk, offset: number, bytes: number): void {
  if (!walk.countReferences || bytes <= 0) return;
  const first = Math.floor(offset / walk.clusterBytes);
  const last = Math.floor((offset + bytes - 1) / walk.clusterBytes);
  for (let cluster = first; cluster <= last; cluster++) {
    if (cluster < walk.references.length) walk.references[cluster] = (walk.references[cluster] ?? 0) + 1;
    else walk.referencesPastEnd.set(cluster, (walk.referencesPastEnd.get(cluster) ?? 0) + 1);
  }
}

function readTable(walk: Walk, offset: number, bytes: number, what: string): DataView {
  const table = new Uint8Array(bytes);
  if (bytes > 0 && (offset % walk.clusterBytes !== 0 || walk.file.read(table, offset) < bytes)) unreadable(walk, `${what} at ${offset} is unaligned or past the end of the file`);
  return view(table);
}

/** Counts what one L1 table reaches; returns the L2 tables it names (offset → table). */
function walkL1(walk: Walk, l1: DataView, format: L2Format): Map<number, DataView> {
  const tables = new Map<number, DataView>();
  const entryBytes = l2EntryBytes(format);
  for (let l1Index = 0; l1Index < l1.byteLength / 8; l1Index++) {
    const { l2Offset } = decodeL1(l1, l1Index * 8);
    if (l2Offset === 0) continue;
    reference(walk, l2Offset, walk.clusterBytes);
    const table = tables.get(l2Offset) ?? readTable(walk, l2Offset, walk.clusterBytes, `L2 table (L1 index ${l1Index})`);
    tables.set(l2Offset, table);
    if (!walk.countReferences) continue;
    for (let slot = 0; slot < walk.clusterBytes / entryBytes; slot++) {
      const entry = decodeL2(table, slot * entryBytes, format);
      if (entry.kind === 'compressed') reference(walk, entry.hostOffset, entry.compressedSize);
      else if (entry.hostOffset !== 0) reference(walk, entry.hostOffset, walk.clusterBytes);
    }
  }
  return tables;
}

function refcountOf(walk: Walk, cluster: number): number {
  const tableIndex = Math.floor(cluster / walk.entriesPerBlock);
  if (tableIndex >= walk.refcountTable.byteLength / 8) return 0;
  const { blockOffset } = decodeRefcountTableEntry(walk.refcountTable, tableIndex * 8);
  if (blockOffset === 0) return 0;
  let block = walk.refcountBlocks.get(blockOffset);
  if (block === undefined) {
    const bytes = new Uint8Array(walk.clusterBytes);
    block = walk.file.read(bytes, blockOffset) < bytes.length ? null : { bytes, view: view(bytes) };
    if (block === null) unreadable(walk, `refcount block ${tableIndex} at ${blockOffset} is past the end of the file`);
    walk.refcountBlocks.set(blockOffset, block);
  }
  if (block === null) return 0;
  return getRefcount(block.bytes, block.view, cluster % walk.entriesPerBlock, walk.header.refcountOrder);
}

function compareRefcounts(walk: Walk): void {
  let end = Math.ceil(walk.fileSize / walk.clusterBytes);
  for (const cluster of walk.referencesPastEnd.keys()) end = Math.max(end, cluster + 1);
  for (let cluster = 0; cluster < end; cluster++) {
    const references = (cluster < walk.references.length ? walk.references[cluster] : walk.referencesPastEnd.get(cluster)) ?? 0;
    const refcount = refcountOf(walk, cluster);
    if (refcount < references) walk.findings.push({ kind: 'refcount-below-references', message: `cluster ${cluster}: refcount ${refcount}, ${references} references` });
    else if (refcount > references) walk.findings.push({ kind: 'leak', message: `cluster ${cluster}: refcount ${refcount}, ${references} references` });
  }
}

/** QEMU's rule for the active tables: COPIED exactly where the refcount is 1. Returns the stale L1 entries. */
function checkCopiedFlags(walk: Walk, l1: DataView, tables: Map<number, DataView>, format: L2Format): number {
  let staleL1 = 0;
  for (let l1Index = 0; l1Index < l1.byteLength / 8; l1Index++) {
    const { l2Offset, copied } = decodeL1(l1, l1Index * 8);
    if (l2Offset === 0) continue;
    const refcount = refcountOf(walk, l2Offset / walk.clusterBytes);
    if (copied && refcount !== 1) {
      staleL1++;
      walk.findings.push({ kind: 'copied-on-shared', message: `active L1 entry ${l1Index} (L2 table at ${l2Offset}) has COPIED but refcount ${refcount}` });
    } else if (!copied && refcount === 1) walk.findings.push({ kind: 'copied-missing', message: `active L1 entry ${l1Index}: COPIED missing, refcount 1` });
  }
  const entryBytes = l2EntryBytes(format);
  for (const [l2Offset, table] of tables) {
    for (let slot = 0; slot < walk.clusterBytes / entryBytes; slot++) {
      const entry = decodeL2(table, slot * entryBytes, format);
      if (entry.kind === 'compressed') {
        if (entry.copied) walk.findings.push({ kind: 'copied-on-shared', message: `compressed L2 entry ${slot} of the table at ${l2Offset} has COPIED` });
        continue;
      }
      // The quick walk looks only for the harmful direction: COPIED where it must not be.
      if (entry.hostOffset === 0 || (!walk.countReferences && !entry.copied)) continue;
      const refcount = refcountOf(walk, entry.hostOffset / walk.clusterBytes);
      if (entry.copied && refcount !== 1) {
        walk.findings.push({ kind: 'copied-on-shared', message: `L2 entry ${slot} of the table at ${l2Offset} (cluster at ${entry.hostOffset}) has COPIED but refcount ${refcount}` });
      } else if (!entry.copied && refcount === 1) {
        walk.findings.push({ kind: 'copied-missing', message: `L2 entry ${slot} of the table at ${l2Offset}: COPIED missing, refcount 1` });
      }
    }
  }
  return staleL1;
}
