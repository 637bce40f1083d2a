/**
 * Where the structures of a valid seed image are, found with the engine's own format parsers,
 * so that mutations can aim at them (a header field, an L2 entry, a snapshot's extra data, …).
 */
import { view } from '../../../src/shared/qcow2/format/bytes.ts';
import { decodeL1, decodeL2, decodeRefcountTableEntry, type ClusterKind } from '../../../src/shared/qcow2/format/entries.ts';
import { clusterSize, extendedL2, parseHeader, V2_HEADER_LENGTH, type Header } from '../../../src/shared/qcow2/format/header.ts';
import { parseSnapshotTable, snapshotTableLength } from '../../../src/shared/qcow2/format/snapshot-table.ts';

export interface HeaderField {
  name: string;
  offset: number;
  size: 1 | 4 | 8;
}

/** The fixed header fields (qcow2.txt "Header"); v3 adds the last six. */
export const HEADER_FIELDS: HeaderField[] = [
  { name: 'magic', offset: 0, size: 4 },
  { name: 'version', offset: 4, size: 4 },
  { name: 'backing_file_offset', offset: 8, size: 8 },
  { name: 'backing_file_size', offset: 16, size: 4 },
  { name: 'cluster_bits', offset: 20, size: 4 },
  { name: 'size', offset: 24, size: 8 },
  { name: 'crypt_method', offset: 32, size: 4 },
  { name: 'l1_size', offset: 36, size: 4 },
  { name: 'l1_table_offset', offset: 40, size: 8 },
  { name: 'refcount_table_offset', offset: 48, size: 8 },
  { name: 'refcount_table_clusters', offset: 56, size: 4 },
  { name: 'nb_snapshots', offset: 60, size: 4 },
  { name: 'snapshots_offset', offset: 64, size: 8 },
  { name: 'incompatible_features', offset: 72, size: 8 },
  { name: 'compatible_features', offset: 80, size: 8 },
  { name: 'autoclear_features', offset: 88, size: 8 },
  { name: 'refcount_order', offset: 96, size: 4 },
  { name: 'header_length', offset: 100, size: 4 },
  { name: 'compression_type', offset: 104, size: 1 },
];

export interface ExtensionSpot {
  type: number;
  /** Offset of the extension's 8-byte type/length header. */
  offset: number;
  length: number;
}

export interface L2EntrySpot {
  /** File offset of the entry. */
  offset: number;
  kind: ClusterKind;
  hostOffset: number;
  compressedSize: number;
}

export interface SnapshotSpot {
  /** File offset of the entry's fixed part. */
  offset: number;
  l1TableOffset: number;
  l1Size: number;
  extraSize: number;
  idSize: number;
  nameSize: number;
}

export interface Region {
  what: string;
  offset: number;
  length: number;
}

export interface Layout {
  fileSize: number;
  clusterBytes: number;
  header: Header;
  headerFields: HeaderField[];
  extensions: ExtensionSpot[];
  /** Where the end-of-extensions marker is (or would be). */
  extensionsEnd: number;
  l1: Region;
  l2Tables: number[];
  l2EntryBytes: number;
  /** Every L2 entry that maps something (data, zero or compressed), plus a few unallocated ones. */
  l2Entries: L2EntrySpot[];
  refcountTable: Region;
  refcountBlocks: number[];
  snapshotTable: Region | null;
  snapshots: SnapshotSpot[];
  snapshotL1s: Region[];
  dataClusters: number[];
  /** Every structure, for overlap targets and truncation points. */
  regions: Region[];
}

export function readLayout(bytes: Uint8Array): Layout {
  const fileSize = bytes.length;
  const header = parseHeader(bytes.subarray(0, Math.min(fileSize, 2 * 1024 * 1024)), fileSize);
  const clusterBytes = clusterSize(header);
  const data = view(bytes);
  const regions: Region[] = [{ what: 'header cluster', offset: 0, length: clusterBytes }];

  const extensions: ExtensionSpot[] = [];
  let position = header.version === 2 ? V2_HEADER_LENGTH : header.headerLength;
  for (const extension of header.extensions) {
    extensions.push({ type: extension.type, offset: position, length: extension.data.length });
    regions.push({ what: `extension ${extension.type.toString(16)}`, offset: position, length: 8 + extension.data.length });
    position += 8 + Math.ceil(extension.data.length / 8) * 8;
  }

  const l1: Region = { what: 'L1 table', offset: header.l1TableOffset, length: header.l1Size * 8 };
  regions.push(l1);
  const format = { clusterBits: header.clusterBits, extendedL2: extendedL2(header) };
  const l2EntryBytes = format.extendedL2 ? 16 : 8;
  const l2Tables = new Set<number>();
  const snapshotL1s: Region[] = [];
  const snapshots: SnapshotSpot[] = [];
  let snapshotTable: Region | null = null;
  if (header.snapshotCount > 0) {
    const tableBytes = bytes.subarray(header.snapshotsOffset);
    const entries = parseSnapshotTable(tableBytes, header.snapshotCount, header.version);
    snapshotTable = { what: 'snapshot table', offset: header.snapshotsOffset, length: snapshotTableLength(tableBytes, header.snapshotCount) };
    regions.push(snapshotTable);
    entries.forEach((entry, index) => {
      const offset = header.snapshotsOffset + snapshotTableLength(tableBytes, index);
      snapshots.push({
        offset,
        l1TableOffset: entry.l1TableOffset,
        l1Size: entry.l1Size,
        extraSize: entry.extraData.length,
        idSize: data.getUint16(offset + 12),
        nameSize: data.getUint16(offset + 14),
      });
      const region = { what: `snapshot ${entry.name} L1 table`, offset: entry.l1TableOffset, length: entry.l1Size * 8 };
      snapshotL1s.push(region);
      regions.push(region);
    });
  }
  for (const table of [l1, ...snapshotL1s]) {
    for (let at = table.offset; at < table.offset + table.length; at += 8) {
      const { l2Offset } = decodeL1(data, at);
      if (l2Offset !== 0) l2Tables.add(l2Offset);
    }
  }

  const l2Entries: L2EntrySpot[] = [];
  const dataClusters = new Set<number>();
  for (const tableOffset of l2Tables) {
    regions.push({ what: 'L2 table', offset: tableOffset, length: clusterBytes });
    let unallocatedKept = 0;
    for (let at = tableOffset; at < tableOffset + clusterBytes; at += l2EntryBytes) {
      const entry = decodeL2(data, at, format);
      const interesting = entry.kind !== 'unallocated' || entry.allocMask !== 0 || entry.zeroMask !== 0;
      if (!interesting && unallocatedKept++ >= 2) continue;
      l2Entries.push({ offset: at, kind: entry.kind, hostOffset: entry.hostOffset, compressedSize: entry.compressedSize });
      if (entry.kind === 'normal') dataClusters.add(entry.hostOffset);
      if (entry.kind === 'compressed') regions.push({ what: 'compressed data', offset: entry.hostOffset, length: entry.compressedSize });
    }
  }
  for (const cluster of dataClusters) regions.push({ what: 'data cluster', offset: cluster, length: clusterBytes });

  const refcountTable: Region = { what: 'refcount table', offset: header.refcountTableOffset, length: header.refcountTableClusters * clusterBytes };
  regions.push(refcountTable);
  const refcountBlocks: number[] = [];
  for (let at = refcountTable.offset; at < refcountTable.offset + refcountTable.length; at += 8) {
    const { blockOffset } = decodeRefcountTableEntry(data, at);
    if (blockOffset !== 0) {
      refcountBlocks.push(blockOffset);
      regions.push({ what: 'refcount block', offset: blockOffset, length: clusterBytes });
    }
  }

  return {
    fileSize,
    clusterBytes,
    header,
    headerFields: HEADER_FIELDS.filter((field) => header.version === 3 || field.offset < V2_HEADER_LENGTH),
    extensions,
    extensionsEnd: position,
    l1,
    l2Tables: [...l2Tables],
    l2EntryBytes,
    l2Entries,
    refcountTable,
    refcountBlocks,
    snapshotTable,
    snapshots,
    snapshotL1s,
    dataClusters: [...dataClusters],
    regions,
  };
}

/** Every offset where a structure starts or ends (and one byte either side): where to truncate. */
export function truncationPoints(layout: Layout): number[] {
  const points = new Set<number>([0, 3, 4, 71, 72, 103, 104, 111, 112, layout.extensionsEnd, layout.extensionsEnd + 8, layout.fileSize - 1]);
  for (const extension of layout.extensions) {
    points.add(extension.offset);
    points.add(extension.offset + 8 + extension.length);
  }
  for (const region of layout.regions) {
    for (const point of [region.offset, region.offset + region.length]) {
      points.add(point - 1);
      points.add(point);
      points.add(point + 1);
    }
  }
  return [...points].filter((point) => point >= 0 && point < layout.fileSize).sort((a, b) => a - b);
}
