/**
 * Repairing a compressed cluster's descriptor whose sector count runs onto metadata (an L1 or L2
 * table, the snapshot table, the header): the descriptor claims more sectors than its compressed
 * stream takes, and the extra ones lie on a cluster something else uses. QEMU's repair raises that
 * cluster's refcount and calls the image clean, leaving metadata that the next write of either
 * use may damage; Cowbell shortens the count to the sectors the stream really takes (decompression
 * stops once it has a cluster's worth, so the guest reads exactly what it read before), and the
 * overlap is gone. One 8-byte write per entry, so a crash leaves the old or the new descriptor.
 * A stream that itself reaches the metadata is left alone (it is reported as before).
 */
import { compressedStreamLength } from '../codec/compression.ts';
import { hexEntry, view } from '../format/bytes.ts';
import { decodeL2, encodeCompressedL2 } from '../format/entries.ts';
import type { Qcow2Image } from '../image/image.ts';
import { readZeroFilled } from '../io/read-zero-filled.ts';
import { ROLE_DATA, ROLE_L2 } from './expected.ts';
import type { CheckFindings } from './findings.ts';
import type { ReferenceScan } from './scan.ts';

const SECTOR = 512;

/** Clusters used both as guest data and as metadata: where a descriptor may run on too far. */
function dataOnMetadata(scan: ReferenceScan): Set<number> {
  const clusters = new Set<number>();
  const { expected } = scan;
  for (let cluster = 0; cluster < expected.compareEnd; cluster++) {
    if (!expected.overlaps(cluster)) continue;
    const roles = expected.rolesOf(cluster);
    if ((roles & ROLE_DATA) !== 0 && (roles & ~ROLE_DATA) !== 0) clusters.add(cluster);
  }
  return clusters;
}

/** Shortens the descriptors that run onto metadata past their stream's end; returns how many changed. */
export function shortenCompressedSpans(image: Qcow2Image, scan: ReferenceScan, findings: CheckFindings): number {
  const targets = dataOnMetadata(scan);
  if (targets.size === 0) return 0;
  const { file, clusterBytes, l2Format } = image;
  let changed = 0;
  for (const l2Offset of scan.l2Tables.keys()) {
    // A table that is also something else is not written to (relocate.ts moves such tables first).
    if (scan.expected.rolesOf(l2Offset / clusterBytes) !== ROLE_L2) continue;
    const bytes = readZeroFilled(file, l2Offset, clusterBytes);
    const table = view(bytes);
    for (let index = 0; index < image.l2Entries; index++) {
      const position = index * image.l2EntryBytes;
      if (table.getUint32(position) === 0 && table.getUint32(position + 4) === 0) continue;
      const entry = decodeL2(table, position, l2Format);
      if (entry.kind !== 'compressed') continue;
      const first = Math.floor(entry.hostOffset / clusterBytes);
      const last = Math.floor((entry.hostOffset + entry.compressedSize - 1) / clusterBytes);
      let firstTarget = -1;
      for (let cluster = first + 1; cluster <= last && firstTarget < 0; cluster++) if (targets.has(cluster)) firstTarget = cluster;
      if (firstTarget < 0) continue;
      let length: number;
      try {
        length = compressedStreamLength(image.header.compressionType, readZeroFilled(file, entry.hostOffset, entry.compressedSize), clusterBytes);
      } catch {
        continue;
      }
      if (length <= 0 || entry.hostOffset + length > firstTarget * clusterBytes) continue;
      const high = table.getUint32(position);
      const low = table.getUint32(position + 4);
      encodeCompressedL2(table, position, l2Format, entry.hostOffset, length);
      file.write(bytes.subarray(position, position + 8), l2Offset + position);
      findings.note(
        `Repairing L2 entry ${index} of the L2 table at 0x${l2Offset.toString(16)} (${hexEntry(high, low)}): its compressed data takes ${plural(sectorsOf(entry.hostOffset, length), 'sector')}, not the ${sectorsOf(entry.hostOffset, entry.compressedSize)} that ran onto cluster ${firstTarget}; it reads as before`,
      );
      changed++;
    }
  }
  if (changed > 0) file.flush();
  return changed;
}

const plural = (count: number, noun: string): string => `${count} ${noun}${count === 1 ? '' : 's'}`;

/** The 512-byte sectors `bytes` at `offset` touch. */
function sectorsOf(offset: number, bytes: number): number {
  return Math.floor((offset + bytes - 1) / SECTOR) - Math.floor(offset / SECTOR) + 1;
}
