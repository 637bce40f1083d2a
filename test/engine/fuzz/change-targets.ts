/**
 * The mutating entry points a user reaches (issue 21 part 1), run on a copy of the image so the
 * other targets keep the damaged one. Oracle on top of fuzz's: a change that fails leaves the
 * file byte-identical, or the target throws a `ChangeWrote` finding (with qemu-img check's verdict
 * on the copy beside the original's).
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { jobTable } from '../../../src/main/worker/job-table.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { silentJob } from '../../../src/shared/qcow2/job-context.ts';
import { withImage } from '../../../src/shared/qcow2/snapshots/operations.ts';
import type { FuzzTarget } from './protocol.ts';

/** A failed change that left the file different from before. */
export class ChangeWroteError extends Error {
  override name = 'ChangeWrote';
}

/** qemu-img check's exit code and counts, for "no worse than before". */
export interface QemuVerdict {
  code: number;
  corruptions: number;
  leaks: number;
  /** What qemu-img said besides its JSON (errors), shortened. */
  said: string;
}

const LOCK_RETRIES = 10;
const LOCK_RETRY_MS = 100;

/**
 * qemu-img check, asked again for a moment while it finds the file locked for writing: the fuzz
 * workers are threads of one process, and a child another thread forks inherits every open file
 * description (its lock too) until it execs, which under load can outlast Cowbell's own close.
 * A lock Cowbell really leaked outlasts the retries and still fails.
 */
function qemuCheckSync(file: string): SpawnSyncReturns<string> {
  let result = spawnSync('qemu-img', ['check', '-f', 'qcow2', '--output=json', file], { encoding: 'utf8' });
  for (let attempt = 0; attempt < LOCK_RETRIES && result.status === 1 && /Failed to get .* lock/.test(result.stderr); attempt++) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, LOCK_RETRY_MS);
    result = spawnSync('qemu-img', ['check', '-f', 'qcow2', '--output=json', file], { encoding: 'utf8' });
  }
  return result;
}

export function qemuVerdictSync(file: string): QemuVerdict {
  const result = qemuCheckSync(file);
  let corruptions = 0;
  let leaks = 0;
  try {
    const report = JSON.parse(result.stdout) as { corruptions?: number; leaks?: number };
    corruptions = report.corruptions ?? 0;
    leaks = report.leaks ?? 0;
  } catch {
    // "could not check" comes without JSON.
  }
  return { code: result.status ?? -1, corruptions, leaks, said: result.stderr.trim().slice(0, 200) };
}

/** Worse: could be checked before and not now, or more corruptions. */
export function isWorse(before: QemuVerdict, after: QemuVerdict): boolean {
  if (before.code !== 1 && after.code === 1) return true;
  return after.corruptions > before.corruptions;
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${(error as { code?: unknown }).code ?? error.name}: ${error.message}`;
  return String(error);
}

/**
 * Where a change's copy goes: memory-backed where the system has it (a successful change flushes
 * several times, and on a disk those flushes were most of the campaign's added time), else beside
 * the image. A change that reads through a backing file needs the copy beside it (`beside`).
 */
const SCRATCH = fs.existsSync('/dev/shm') ? '/dev/shm' : null;

/** The v3 header's autoclear_features field (qcow2.txt: bytes 88–95). */
const AUTOCLEAR_START = 88;
const AUTOCLEAR_END = 96;

/**
 * True when `after` is `before` with only autoclear bits cleared. Cowbell clears the bits of
 * features it does not maintain before its first change, as QEMU does at every read-write open
 * (qcow2.txt allows it at any time); a change that then fails (a partial write into a cluster
 * whose compressed stream is damaged) has changed nothing else.
 */
export function onlyAutoclearCleared(before: Uint8Array, after: Uint8Array): boolean {
  if (before.length !== after.length || before.length < AUTOCLEAR_END) return false;
  const view = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view(before).getUint32(4) < 3) return false;
  if (!Buffer.from(before.subarray(0, AUTOCLEAR_START)).equals(after.subarray(0, AUTOCLEAR_START))) return false;
  if (!Buffer.from(before.subarray(AUTOCLEAR_END)).equals(after.subarray(AUTOCLEAR_END))) return false;
  const was = view(before).getBigUint64(AUTOCLEAR_START);
  const now = view(after).getBigUint64(AUTOCLEAR_START);
  return now !== was && (now & ~was) === 0n;
}

/** Runs `change` on a copy; a failure must leave the copy byte-identical to the image (autoclear bits aside, see above). */
function onCopy(file: string, name: string, change: (copy: string) => unknown, beside = false): unknown {
  const folder = SCRATCH !== null && !beside ? SCRATCH : path.dirname(file);
  const copy = path.join(folder, `cowbell-${randomUUID().slice(0, 8)}-${name}.qcow2`);
  fs.copyFileSync(file, copy);
  try {
    return change(copy);
  } catch (error) {
    const [original, changed] = [fs.readFileSync(file), fs.readFileSync(copy)];
    if (!original.equals(changed) && !onlyAutoclearCleared(original, changed)) {
      const before = qemuVerdictSync(file);
      const after = qemuVerdictSync(copy);
      const verdict = `qemu-img check ${before.code}/${before.corruptions} corruptions before, ${after.code}/${after.corruptions} after${isWorse(before, after) ? ' (worse)' : ''}`;
      throw new ChangeWroteError(`${name} failed (${describe(error)}) and changed the file; ${verdict}`);
    }
    throw error;
  } finally {
    fs.rmSync(copy, { force: true });
  }
}

/** The first snapshot's id as a read-only open sees it, '1' if the image does not open, null if it has none. */
function firstSnapshotId(file: string): string | null {
  let image: Qcow2Image;
  try {
    image = Qcow2Image.open(file, { readOnly: true, openBacking: false });
  } catch {
    return '1';
  }
  try {
    return image.snapshots[0]?.id ?? null;
  } finally {
    image.close();
  }
}

/** Runs `use` with the first snapshot's id; an image without snapshots has nothing to change. */
function withFirstSnapshot(file: string, use: (id: string) => unknown): unknown {
  const id = firstSnapshotId(file);
  return id === null ? undefined : use(id);
}

const GUEST_BYTES = 4096;

/**
 * A guest write at the start or the middle of the disk, flushed: copy-on-write, allocation, new L2
 * tables. One write per change: a failed one must leave the file as it was, and two in a row are
 * two changes (the first stays done when the second fails, as on any disk).
 */
function writeGuest(file: string, where: 'start' | 'middle'): void {
  withImage(
    file,
    'write',
    (image) => {
      const data = new Uint8Array(GUEST_BYTES).fill(0x5a);
      const offset = where === 'start' ? 0 : Math.floor(image.virtualSize / 2 / GUEST_BYTES) * GUEST_BYTES;
      if (offset + GUEST_BYTES <= image.virtualSize) image.write(data, offset);
    },
    { openBacking: true },
  );
}

const change = (name: string, run: (copy: string, file: string) => unknown, beside = false): FuzzTarget => ({ name, run: (file) => onCopy(file, name, (copy) => run(copy, file), beside) });

/** The disk size a read-only open sees, or null where it does not open (the change is then asked of a default size). */
function virtualSizeOf(file: string): number | null {
  try {
    const image = Qcow2Image.open(file, { readOnly: true, openBacking: false });
    try {
      return image.virtualSize;
    } finally {
      image.close();
    }
  } catch {
    return null;
  }
}

const MIB = 1024 * 1024;

/** Every snapshot change the UI and CLI make, through the worker job table, plus guest writes. */
export const CHANGE_TARGETS: FuzzTarget[] = [
  change('change-snapshot-create', (copy) => jobTable['snapshot.create'](copy, { name: 'fuzz-new' }, silentJob)),
  change('change-snapshot-apply', (copy, file) => withFirstSnapshot(file, (id) => jobTable['snapshot.apply'](copy, { name: id }, silentJob))),
  change('change-snapshot-delete', (copy, file) => withFirstSnapshot(file, (id) => jobTable['snapshot.delete'](copy, { name: id }, silentJob))),
  change('change-snapshot-rename', (copy, file) => withFirstSnapshot(file, (id) => jobTable['snapshot.rename'](copy, { name: id, newName: 'fuzz-renamed' }, silentJob))),
  change('change-guest-write', (copy) => writeGuest(copy, 'start'), true),
  change('change-guest-write-middle', (copy) => writeGuest(copy, 'middle'), true),
  // A grow by a megabyte (the active L1 may grow, a partial last cluster is zeroed) and a shrink to half, dropping what lies there.
  change('change-resize-grow', (copy, file) => jobTable['image.resize'](copy, { size: (virtualSizeOf(file) ?? MIB) + MIB }, silentJob), true),
  change('change-resize-shrink', (copy, file) => jobTable['image.resize'](copy, { size: Math.max(512, Math.floor((virtualSizeOf(file) ?? 2 * MIB) / 2 / 512) * 512), shrink: true, discardData: true }, silentJob), true),
];

/** Rewrites replace the file only after checking the new one: slower, so the corpus runs them and the fuzz campaign does not. */
export const REWRITE_TARGETS: FuzzTarget[] = [change('change-compact', (copy) => jobTable['image.compact'](copy, {}, silentJob), true)];
