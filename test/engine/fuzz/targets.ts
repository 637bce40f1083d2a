/**
 * What the fuzzer runs on every mutated image, inside a resource-limited worker thread. Each
 * target is one engine entry point a user reaches; to add one, import it and add one line to
 * TARGETS. Work on a hostile image is bounded here (guest bytes read per target), because a tiny
 * file can legitimately describe terabytes of guest data: that is not a hang in the engine.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jobTable } from '../../../src/main/worker/job-table.ts';
import { checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { convertImage } from '../../../src/shared/qcow2/convert/convert.ts';
import { openStateFiles, type StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { readCowbellRecord } from '../../../src/shared/qcow2/format/cowbell-record.ts';
import type { GuestReader } from '../../../src/shared/qcow2/image/guest-reader.ts';
import { Qcow2Image, type L1Table } from '../../../src/shared/qcow2/image/image.ts';
import { readImageInfo, snapshotInfo } from '../../../src/shared/qcow2/image/info.ts';
import { silentJob } from '../../../src/shared/qcow2/job-context.ts';
import { mapImage } from '../../../src/shared/qcow2/image/map.ts';
import { CHANGE_TARGETS } from './change-targets.ts';
import type { FuzzTarget } from './protocol.ts';

export type { FuzzTarget };

const target = (name: string, run: (imagePath: string) => unknown): FuzzTarget => ({ name, run });

export const TARGETS: FuzzTarget[] = [
  target('info', (file) => readImageInfo(file)),
  target('open', (file) => withImage(file, () => undefined)),
  target('read-guest', (file) => withImage(file, (image) => readGuest(image, image.l1, image, new Budget()))),
  target('snapshot-list', (file) => withImage(file, (image) => image.snapshots.map((entry) => ({ ...snapshotInfo(entry), record: readCowbellRecord(entry) })))),
  target('read-snapshots', (file) => withImage(file, readEverySnapshot)),
  target('map', (file) => withImage(file, (image) => mapImage(image))),
  target('check', (file) => checkImagePath(file)),
  target('repair', repairCopy),
  target('convert-qcow2', (file) => convertImage({ source: file, target: beside(file, 'converted.qcow2'), targetFormat: 'qcow2', overwrite: true })),
  target('convert-raw', (file) => convertImage({ source: file, target: beside(file, 'converted.raw'), targetFormat: 'raw', overwrite: true })),
  // The UI's requests: main checks the path, then a pool worker runs the job table's function.
  target('ui-open', (file) => jobTable['image.info'](file, {}, silentJob)),
  target('ui-allocation-map', (file) => forStates(file, (state) => jobTable['image.map'](file, { cells: 4096, ...(state === 'current' ? {} : { snapshot: state }) }, silentJob))),
  target('ui-usage', (file) => jobTable['image.usage'](file, {}, silentJob)),
  target('ui-snapshot-tree', (file) => jobTable['snapshot.tree'](file, {}, silentJob)),
  target('ui-diff', (file) => forStates(file, (state) => jobTable['image.diff'](file, { from: state, to: 'current' }, silentJob))),
  target('files', browseFiles),
];

/**
 * `cowbell ls` and `copy-out` on every state (files/): the volumes, a bounded walk of each
 * filesystem, the start of each file and where it lies. A volume without a filesystem is skipped;
 * a state whose files cannot be opened, or a path that fails, must fail with a typed error.
 */
async function browseFiles(file: string): Promise<void> {
  const ids = withImage(file, (image) => image.snapshots.slice(0, MAX_STATES).map((entry) => entry.id));
  for (const state of ['current', ...ids]) {
    const files = await openStateFiles(file, state);
    try {
      const budget = { entries: 200, bytes: 1024 * 1024 };
      const roots = files.volumes.some((volume) => volume.table !== 'none') ? files.volumes.map((volume) => `/${volume.name}`) : ['/'];
      for (const [index, root] of roots.entries()) {
        if (files.volumes[index]?.filesystem === null) continue;
        await walkFiles(files, root, 0, budget);
      }
    } finally {
      await files.close();
    }
  }
}

async function walkFiles(files: StateFiles, folder: string, depth: number, budget: { entries: number; bytes: number }): Promise<void> {
  if (depth > 8) return;
  for (const entry of await files.list(folder)) {
    if (--budget.entries < 0) return;
    if (entry.kind === 'directory') await walkFiles(files, entry.path, depth + 1, budget);
    else if (entry.kind === 'file' && budget.bytes > 0) {
      const buffer = new Uint8Array(Math.min(entry.size, 64 * 1024, budget.bytes));
      budget.bytes -= buffer.length;
      await files.read(entry.path, buffer, 0);
      await files.extents(entry.path);
    }
  }
}

/** What the guest reads from the start of the disk, or null where reading fails. */
function guestPrefix(file: string): Uint8Array | null {
  try {
    return withImage(file, (image) => image.read(0, Math.min(image.virtualSize, 4 * 1024 * 1024)));
  } catch (error) {
    if (error instanceof Qcow2Error) return null;
    throw error;
  }
}

/**
 * check --repair all on a copy (the other targets keep the damaged image), then a check of the
 * result. A repair that returns must not have broken what worked: an image that opened still
 * opens, and guest bytes that read before read the same (the start of the disk is compared).
 */
function repairCopy(file: string): unknown {
  const copy = beside(file, 'repaired.qcow2');
  fs.copyFileSync(file, copy);
  const before = guestPrefix(copy);
  checkImagePath(copy, { repair: 'all' });
  if (before !== null) {
    const after = guestPrefix(copy);
    if (after === null) throw new Error('check --repair made an image whose data could be read unreadable');
    const differs = after.findIndex((byte, index) => byte !== before[index]);
    if (differs >= 0 || after.length !== before.length) throw new Error(`check --repair changed what the guest reads (first at byte ${differs})`);
  }
  return checkImagePath(copy);
}

/** Snapshots a per-state target visits at most (the table may claim thousands). */
const MAX_STATES = 8;

/** Runs `use` for the current state and the first snapshots (by id, as the UI names them). */
function forStates(file: string, use: (state: string) => unknown): void {
  const ids = withImage(file, (image) => image.snapshots.slice(0, MAX_STATES).map((entry) => entry.id));
  for (const state of ['current', ...ids]) use(state);
}

/** What the campaign runs on every case: the reads, then the changes (each on a copy). */
export function targetNames(): string[] {
  return [...TARGETS, ...CHANGE_TARGETS].map((entry) => entry.name);
}

/** The read-only targets alone: every clean seed passes each of them. */
export function readTargetNames(): string[] {
  return TARGETS.map((entry) => entry.name);
}

/** A file next to the image (in the worker's own folder), for targets that write one. */
function beside(file: string, name: string): string {
  return path.join(path.dirname(file), name);
}

function withImage<T>(file: string, use: (image: Qcow2Image) => T): T {
  const image = Qcow2Image.open(file, { readOnly: true });
  try {
    return use(image);
  } finally {
    image.close();
  }
}

const CHUNK = 256 * 1024;
/** Guest bytes one target reads at most (mapped ranges); more is work, not a finding. */
const BUDGET_BYTES = 32 * 1024 * 1024;
/** Unmapped L1 ranges get a small probe read each, up to this many. */
const MAX_PROBES = 64;

class Budget {
  bytes = BUDGET_BYTES;
  probes = MAX_PROBES;
}

/**
 * Reads the guest disk through `l1` in chunks: every range an L2 table maps, a probe at the start
 * of unmapped ranges (the backing file shows through there), until the budget runs out.
 */
function readGuest(image: Qcow2Image, l1: L1Table, reader: GuestReader, budget: Budget): void {
  const chunk = new Uint8Array(CHUNK);
  const probe = new Uint8Array(512);
  const coverage = image.l2Entries * image.clusterBytes;
  let position = 0;
  while (position < reader.virtualSize && budget.bytes > 0) {
    const l1Index = Math.floor(position / coverage);
    const rangeEnd = (l1Index + 1) * coverage;
    const mapped = l1Index < l1.size && (l1.view.getUint32(l1Index * 8) !== 0 || l1.view.getUint32(l1Index * 8 + 4) !== 0);
    if (!mapped) {
      if (budget.probes-- <= 0) return;
      reader.readInto(probe, position);
      if (l1Index >= l1.size) return;
      position = rangeEnd;
      continue;
    }
    const length = Math.min(CHUNK, rangeEnd - position);
    reader.readInto(chunk.subarray(0, length), position);
    budget.bytes -= length;
    position += length;
  }
}

function readEverySnapshot(image: Qcow2Image): void {
  const budget = new Budget();
  for (const snapshot of image.snapshots) {
    const reader = image.snapshotReader(snapshot);
    readGuest(image, image.loadSnapshotL1(snapshot), reader, budget);
    reader.close();
  }
}
