/**
 * Targets that hold the engine against qemu-img itself on the same damaged image (the corpus of
 * issue 21): guest data where both read, and repair where qemu-img's makes the image clean.
 * They run qemu-img synchronously inside the fuzz worker, whose deadline counts only the worker's
 * own CPU time.
 */
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkImagePath } from '../../../src/shared/qcow2/check/check.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { SnapshotEntry } from '../../../src/shared/qcow2/format/snapshot-table.ts';
import type { GuestReader } from '../../../src/shared/qcow2/image/guest-reader.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import { qemuVerdictSync } from './change-targets.ts';
import type { FuzzTarget } from './protocol.ts';

export class DataDisagreementError extends Error {
  override name = 'DataDisagreement';
}

export class RepairWeakerError extends Error {
  override name = 'RepairWeaker';
}

/** Guest bytes compared per state at most: qemu-img writes a raw copy of each. */
const MAX_COMPARED_BYTES = 64 * 1024 * 1024;
const MAX_SNAPSHOTS = 2;
const CHUNK = 1024 * 1024;

/** A new file next to the image, named afresh each time: a worker replaced after a hang may still have a qemu-img running on the old names. */
function beside(file: string, name: string): string {
  return path.join(path.dirname(file), `${randomUUID().slice(0, 8)}-${name}`);
}

/** How qemu-img names a snapshot unambiguously (`-l` takes an id or a name), or null if neither is unique. */
function snapshotOption(snapshots: readonly SnapshotEntry[], snapshot: SnapshotEntry): string | null {
  if (snapshots.filter((entry) => entry.id === snapshot.id).length === 1) return `snapshot.id=${snapshot.id}`;
  if (snapshots.filter((entry) => entry.name === snapshot.name).length === 1) return `snapshot.name=${snapshot.name}`;
  return null;
}

/** qemu-img's raw copy of a state, or null where qemu-img cannot read it. */
function qemuRaw(file: string, snapshotOption: string | null): string | null {
  const output = beside(file, 'qemu-guest.raw');
  const args = ['convert', '-f', 'qcow2', '-O', 'raw'];
  if (snapshotOption !== null) args.push('-l', snapshotOption);
  const result = spawnSync('qemu-img', [...args, file, output], { encoding: 'utf8', cwd: path.dirname(file) });
  return result.status === 0 ? output : null;
}

/** Compares what Cowbell reads of one state with qemu-img's raw copy; Cowbell refusing is not a disagreement. */
function compareState(image: Qcow2Image, file: string, snapshotIndex: number | null): void {
  const snapshot = snapshotIndex === null ? null : image.snapshots[snapshotIndex];
  if (snapshot === undefined) return;
  const option = snapshot === null ? null : snapshotOption(image.snapshots, snapshot);
  if (snapshot !== null && option === null) return;
  const raw = qemuRaw(file, option);
  if (raw === null) return;
  try {
    let reader: GuestReader;
    try {
      reader = snapshot === null ? image : image.snapshotReader(snapshot);
    } catch (error) {
      if (error instanceof Qcow2Error) return;
      throw error;
    }
    const fd = fs.openSync(raw, 'r');
    // qemu-img reads a snapshot at the disk's current size (convert -l), Cowbell at the snapshot's own: the common part is compared.
    const size = Math.min(reader.virtualSize, fs.fstatSync(fd).size, MAX_COMPARED_BYTES);
    try {
      if (snapshot === null && fs.fstatSync(fd).size !== reader.virtualSize) {
        throw new DataDisagreementError(`current: qemu-img reads ${fs.fstatSync(fd).size} guest bytes, Cowbell ${reader.virtualSize}`);
      }
      const ours = new Uint8Array(CHUNK);
      const theirs = Buffer.alloc(CHUNK);
      for (let position = 0; position < size; position += CHUNK) {
        const length = Math.min(CHUNK, size - position);
        try {
          reader.readInto(ours.subarray(0, length), position);
        } catch (error) {
          if (error instanceof Qcow2Error) return;
          throw error;
        }
        fs.readSync(fd, theirs, 0, length, position);
        if (!theirs.subarray(0, length).equals(ours.subarray(0, length))) {
          const first = ours.subarray(0, length).findIndex((byte, index) => byte !== theirs[index]);
          throw new DataDisagreementError(`${snapshot?.name ?? 'current'}: Cowbell and qemu-img read different guest bytes at ${position + first}`);
        }
      }
    } finally {
      fs.closeSync(fd);
      if (reader !== image) reader.close();
    }
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

function agreeWithQemu(file: string): void {
  let image: Qcow2Image;
  try {
    image = Qcow2Image.open(file, { readOnly: true });
  } catch (error) {
    if (error instanceof Qcow2Error) return;
    throw error;
  }
  try {
    compareState(image, file, null);
    for (let index = 0; index < Math.min(MAX_SNAPSHOTS, image.snapshots.length); index++) compareState(image, file, index);
  } finally {
    image.close();
  }
}

/** qemu-img check -r all on one copy, Cowbell's repair on another: where qemu-img's is clean, Cowbell's must be. */
function repairLikeQemu(file: string): void {
  const theirs = beside(file, 'qemu-repaired.qcow2');
  const ours = beside(file, 'cowbell-repaired.qcow2');
  fs.copyFileSync(file, theirs);
  fs.copyFileSync(file, ours);
  try {
    // qemu-img check -r all answers for the image after its repair (it checks again).
    const repaired = spawnSync('qemu-img', ['check', '-q', '-r', 'all', '-f', 'qcow2', theirs], { encoding: 'utf8' });
    if (repaired.status !== 0) return;
    let refused = '';
    try {
      checkImagePath(ours, { repair: 'all' });
    } catch (error) {
      if (!(error instanceof Qcow2Error)) throw error;
      refused = ` (Cowbell's repair refused: ${error.code} ${error.message})`;
    }
    const verdict = qemuVerdictSync(ours);
    if (verdict.code !== 0) {
      throw new RepairWeakerError(`qemu-img check -r all made the image clean, Cowbell's repair left qemu-img check ${verdict.code} (${verdict.corruptions} corruptions, ${verdict.leaks} leaks${verdict.said === '' ? '' : `: ${verdict.said}`})${refused}`);
    }
  } finally {
    fs.rmSync(theirs, { force: true });
    fs.rmSync(ours, { force: true });
  }
}

export const QEMU_ORACLE_TARGETS: FuzzTarget[] = [
  { name: 'qemu-agree', run: agreeWithQemu },
  { name: 'qemu-repair', run: repairLikeQemu },
];
