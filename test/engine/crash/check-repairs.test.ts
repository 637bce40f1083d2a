/**
 * A power cut at any moment of the repairs issue 21 added (a rebuild from no refcount table, a
 * repaired snapshot table, a repaired copy of an overwritten L2 table) leaves the image no worse
 * than before: no more corruptions, the active disk reads as before, every snapshot the finished
 * repair keeps reads as before wherever it is still listed, and repairing again ends clean.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkExitCode, checkImage } from '../../../src/shared/qcow2/check/check.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { Qcow2Image } from '../../../src/shared/qcow2/image/image.ts';
import type { CheckResult } from '../../../src/shared/qcow2/model.ts';
import { crashPoints, crashState, describeCrashPoint, FaultFile } from '../../helpers/fault-file.ts';
import { firstDifference, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { buildWithSnapshots, damages } from '../../helpers/repair-damage.ts';

let folder: TempDir;
const bases = { '0.10': '', '1.1': '' };
beforeAll(async () => {
  folder = tempDir();
  bases['0.10'] = folder.file('base-v2.qcow2');
  bases['1.1'] = folder.file('base-v3.qcow2');
  await buildWithSnapshots(bases['0.10'], '0.10');
  await buildWithSnapshots(bases['1.1'], '1.1');
}, 60_000);
afterAll(() => folder.cleanup());

/**
 * Corruptions that can harm data. A COPIED flag missing where the refcount is 1 only costs a copy
 * on the next write (qcow2.txt); it shows between a repair lowering a shared cluster's refcount
 * to 1 and the pass that sets the flag, and QEMU's repair has the same window.
 */
function harmfulCorruptions(result: CheckResult): number {
  const missingFlags = result.messages.filter((message) => /^ERROR OFLAG_COPIED .* refcount=1$/.test(message)).length;
  return (result.corruptions ?? 0) - missingFlags;
}

function checkOf(file: BlockFile, repair: boolean): CheckResult {
  const image = Qcow2Image.openFile(file, { openBacking: false, allowDirtyForRepair: repair, forCheck: true });
  try {
    return checkImage(image, repair ? { repair: 'all' } : {});
  } finally {
    image.close();
  }
}

/** The active disk and each listed snapshot (by id and name) as the engine reads them; null where it cannot. */
function statesOf(file: BlockFile): Map<string, Uint8Array | null> {
  const image = Qcow2Image.openFile(file, { openBacking: false, forCheck: true });
  const states = new Map<string, Uint8Array | null>();
  const read = (key: string, reader: () => Uint8Array): void => {
    try {
      states.set(key, reader());
    } catch {
      states.set(key, null);
    }
  };
  try {
    read('active', () => image.read(0, image.virtualSize));
    for (const snapshot of image.snapshots) {
      read(`${snapshot.id}/${snapshot.name}`, () => {
        const view = image.snapshotReader(snapshot);
        const bytes = new Uint8Array(view.virtualSize);
        view.readInto(bytes, 0);
        return bytes;
      });
    }
  } finally {
    image.close();
  }
  return states;
}

describe('a power cut during the repairs of issue 21 leaves the image no worse than before', { timeout: 300_000 }, () => {
  for (const [index, damage] of damages.entries()) {
    it(damage.name, async () => {
      const path = folder.file(`crash-${index}.qcow2`);
      if (damage.build) await damage.build(path);
      else fs.copyFileSync(bases[damage.compat], path);
      await damage.apply(path);
      const initial = new Uint8Array(fs.readFileSync(path));
      const before = checkOf(new FaultFile(path, initial, { readOnly: true }), false);
      const beforeStates = statesOf(new FaultFile(path, initial, { readOnly: true }));
      const fault = new FaultFile(path, initial);
      const repaired = checkOf(fault, true);
      expect(checkExitCode(repaired)).toBe(0);
      const after = statesOf(crashState(path, initial, fault.log, { cut: fault.log.length, pattern: { kind: 'keep-all' } }));
      let states = 0;
      for (const point of crashPoints(fault.log, 3, 11)) {
        const state = crashState(path, initial, fault.log, point);
        const where = describeCrashPoint(fault.log, point);
        expect.soft(harmfulCorruptions(checkOf(state, false)), where).toBeLessThanOrEqual(harmfulCorruptions(before));
        const now = statesOf(state);
        expect.soft(firstDifference(now.get('active') ?? new Uint8Array(0), beforeStates.get('active') ?? new Uint8Array(1)), `${where}: the active disk`).toBe(-1);
        // A snapshot the finished repair keeps reads, at every cut where it is listed, as it does at the end.
        for (const [key, bytes] of after) {
          if (key === 'active' || bytes === null || !now.has(key)) continue;
          const seen = now.get(key);
          if (seen === null || seen === undefined) continue;
          expect.soft(firstDifference(seen, bytes), `${where}: ${key}`).toBe(-1);
        }
        expect.soft(checkExitCode(checkOf(new FaultFile(path, state.bytes()), true)), `${where}: repaired again`).toBe(0);
        states++;
      }
      expect(states).toBeGreaterThan(2);
    });
  }
});
