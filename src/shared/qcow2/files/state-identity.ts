/**
 * A string naming which guest bytes a state of an open image holds, the same only while none of
 * them can have changed (replay-memo.ts keeps replayed logs under it): every file the state reads
 * (the image, its external data file, its backing chain) by device, inode, size, modification and
 * change time, and which state. Any write, rename over or repair changes a file's change time; a
 * snapshot's record names it among the others.
 *
 * A file changed within the last two seconds gets no identity: the kernel stamps times from a
 * clock that ticks every few milliseconds, so a write in the same tick as the stat would leave the
 * times as they were (git's "racily clean" files). Anything this does not know how to name (a
 * reader of another kind, a backing file that could not be opened) gets none either.
 */
import * as fs from 'node:fs';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import type { BlockFile } from '../io/block-file.ts';
import { descriptorOf } from '../io/fail-stop-file.ts';
import type { GuestReader } from '../image/guest-reader.ts';
import { Qcow2Image, Qcow2StateView } from '../image/image.ts';
import { RawImage } from '../image/raw-image.ts';

/** How long after its last change a file's times are trusted to tell a later change. */
const SETTLED_NS = 2_000_000_000n;

/** The identity of `reader`'s bytes in `snapshot`'s state (null: the current state), or null where it cannot be told. */
export function stateIdentity(reader: GuestReader, snapshot: SnapshotEntry | null, nowNs = BigInt(Date.now()) * 1_000_000n): string | null {
  const files = readerIdentity(reader instanceof Qcow2StateView ? reader.image : reader, nowNs);
  if (files === null) return null;
  const state = snapshot === null ? 'current' : `snapshot ${snapshot.id} ${snapshot.l1TableOffset} ${snapshot.l1Size} ${snapshot.dateSec}.${snapshot.dateNsec} ${snapshot.diskSize ?? ''}`;
  return `${state} of ${files} (${reader.virtualSize})`;
}

function readerIdentity(reader: GuestReader, nowNs: bigint): string | null {
  if (reader instanceof RawImage) return fileIdentity(reader.file, nowNs);
  if (!(reader instanceof Qcow2Image)) return null;
  const own = fileIdentity(reader.file, nowNs);
  if (own === null) return null;
  let data = '';
  if (reader.externalData) {
    if (reader.dataFile === null) return null;
    const dataFile = fileIdentity(reader.dataFile, nowNs);
    if (dataFile === null) return null;
    data = ` data ${dataFile}`;
  }
  // A backing file named but not opened reads as zeros today and as its bytes once it is there.
  if (reader.header.backingFile !== null && reader.backing === null) return null;
  const below = reader.backing === null ? '' : readerIdentity(reader.backing, nowNs);
  if (below === null) return null;
  return `${own}${data}${below === '' ? '' : ` over ${below}`}`;
}

function fileIdentity(file: BlockFile, nowNs: bigint): string | null {
  const descriptor = descriptorOf(file);
  if (descriptor === null) return null;
  let stats: fs.BigIntStats;
  try {
    stats = fs.fstatSync(descriptor, { bigint: true });
  } catch {
    return null;
  }
  if (nowNs - stats.mtimeNs < SETTLED_NS || nowNs - stats.ctimeNs < SETTLED_NS) return null;
  return `[${stats.dev}:${stats.ino} ${stats.size} ${stats.mtimeNs} ${stats.ctimeNs}]`;
}
