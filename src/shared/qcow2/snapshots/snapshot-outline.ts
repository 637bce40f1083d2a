/**
 * The quick snapshot tree, from the header and the snapshot table alone, before any table is read:
 * names, ids, dates, VM state and disk sizes, notes, the parents Cowbell recorded (and placeholders,
 * marked pending, where only the mapping pass can tell), and no space figures (null). It reads the
 * header cluster and the snapshot table entry by entry, exactly: no byte of an L1, L2 or refcount
 * table, so it costs the same on any disk. The full tree (snapshot-tree.ts) follows with the rest.
 */
import { readHeaderCluster } from '../image/image.ts';
import type { BlockFile } from '../io/block-file.ts';
import { Qcow2Error } from '../errors.ts';
import { parseHeader, type Header } from '../format/header.ts';
import { MAX_SNAPSHOT_TABLE_BYTES } from '../format/limits.ts';
import { parseSnapshotTable, type SnapshotEntry } from '../format/snapshot-table.ts';
import type { SnapshotTree } from '../model.ts';
import { buildTree, chronological } from './snapshot-tree.ts';

const ENTRY_FIXED_BYTES = 40;

/** The header and the snapshot table, each entry read as long as its fixed part says (nothing past the table). */
export function readSnapshotTableOnly(file: BlockFile): { header: Header; entries: SnapshotEntry[] } {
  const fileSize = file.size();
  const header = parseHeader(readHeaderCluster(file, fileSize), fileSize);
  if (header.snapshotCount === 0) return { header, entries: [] };
  const inFile = Math.max(0, fileSize - header.snapshotsOffset);
  let bytes = new Uint8Array(Math.min(inFile, header.snapshotCount * 256, MAX_SNAPSHOT_TABLE_BYTES));
  let filled = 0;
  /** Reads the table up to `length` bytes: what the file holds, zeros past its end (as QEMU reads there). */
  const readUpTo = (length: number): void => {
    if (length > MAX_SNAPSHOT_TABLE_BYTES) throw new Qcow2Error('CORRUPT', `The snapshot table is larger than QEMU's limit (${MAX_SNAPSHOT_TABLE_BYTES} bytes)`);
    if (length <= filled) return;
    if (length > bytes.length) {
      const grown = new Uint8Array(Math.min(Math.max(length, bytes.length * 2), MAX_SNAPSHOT_TABLE_BYTES));
      grown.set(bytes.subarray(0, filled));
      bytes = grown;
    }
    const fromFile = Math.min(length, inFile);
    if (fromFile > filled) file.read(bytes.subarray(filled, fromFile), header.snapshotsOffset + filled);
    filled = length;
  };
  let position = 0;
  for (let index = 0; index < header.snapshotCount; index++) {
    // An entry that starts past the end of the file: the parser says the table is cut short.
    if (position + ENTRY_FIXED_BYTES > inFile) break;
    readUpTo(position + ENTRY_FIXED_BYTES);
    const fixed = new DataView(bytes.buffer, bytes.byteOffset + position, ENTRY_FIXED_BYTES);
    const end = position + ENTRY_FIXED_BYTES + fixed.getUint32(36) + fixed.getUint16(12) + fixed.getUint16(14);
    readUpTo(end);
    position = Math.ceil(end / 8) * 8;
  }
  return { header, entries: parseSnapshotTable(bytes.subarray(0, filled), header.snapshotCount, header.version, inFile) };
}

/** The tree as the snapshot table alone tells it: space figures null, parents needing the mapping pass pending. */
export function snapshotOutline(file: BlockFile): SnapshotTree {
  const { header, entries } = readSnapshotTableOnly(file);
  const inputs = { ordered: chronological(entries), activeL1Offset: header.l1TableOffset, activeL1: null, distance: null };
  return buildTree(inputs, header.virtualSize, () => ({ exclusiveBytes: null, sharedBytes: null }));
}
