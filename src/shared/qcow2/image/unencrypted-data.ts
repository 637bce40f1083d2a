/**
 * What an encrypted image stores in the clear: QEMU writes compressed clusters of a LUKS or AES
 * image as plaintext deflate (`qemu-io write -c` succeeds on one, and reads never decrypt them).
 * No other tool reports it. Every state counts (the current one and each snapshot's), each
 * compressed cluster once however many states share it. Only the mapping tables are read, never
 * data, so no passphrase is needed.
 */
import { Qcow2Error } from '../errors.ts';
import { view } from '../format/bytes.ts';
import { decodeL2, OFLAG_COMPRESSED_HI } from '../format/entries.ts';
import type { L1Table, Qcow2Image } from './image.ts';
import { OffsetIndex } from './offset-index.ts';

export interface UnencryptedData {
  /** Compressed clusters, each stored once. */
  clusters: number;
  /** Guest bytes they hold (a compressed cluster holds one guest cluster). */
  guestBytes: number;
}

/** The plaintext compressed clusters of an encrypted image; null for a plain one or where the tables cannot be read. */
export function unencryptedData(image: Qcow2Image): UnencryptedData | null {
  if (image.header.cryptMethod === 0) return null;
  try {
    return countCompressed(image);
  } catch (error) {
    // A damaged table is check's to report; info still describes the rest.
    if (error instanceof Qcow2Error && error.code !== 'IO_ERROR') return null;
    throw error;
  }
}

function countCompressed(image: Qcow2Image): UnencryptedData {
  const tables: L1Table[] = [image.l1, ...image.snapshots.map((snapshot) => image.loadSnapshotL1(snapshot))];
  const l2Offsets = new Set<number>();
  for (const l1 of tables) {
    for (let l1Index = 0; l1Index < l1.size; l1Index++) {
      const l2Offset = image.l2OffsetAt(l1, l1Index);
      if (l2Offset !== 0) l2Offsets.add(l2Offset);
    }
  }
  const fileSize = image.file.size();
  const table = new Uint8Array(image.clusterBytes);
  const entries = view(table);
  // Distinct compressed data, by its offset (a Set would stop at 2^24).
  const compressed = new OffsetIndex();
  for (const l2Offset of l2Offsets) {
    if (l2Offset + table.length > fileSize) throw new Qcow2Error('CORRUPT', 'An L2 table lies past the end of the file');
    image.file.read(table, l2Offset);
    for (let position = 0; position < table.length; position += image.l2EntryBytes) {
      // The compressed flag is in the high word: decode only the entries that have it.
      if ((entries.getUint32(position) & OFLAG_COMPRESSED_HI) === 0) continue;
      const hostOffset = decodeL2(entries, position, image.l2Format).hostOffset;
      if (!(hostOffset < fileSize)) throw new Qcow2Error('CORRUPT', 'A compressed cluster lies past the end of the file');
      compressed.add(hostOffset);
    }
  }
  return { clusters: compressed.count, guestBytes: compressed.count * image.clusterBytes };
}
