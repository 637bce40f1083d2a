/**
 * `cowbell passphrase` (changeKeySlots: add the new slot, flush, disable the old one, flush,
 * overwrite its material 40 times) cut at every write, with the power-cut reorderings the harness
 * models (fault-file.ts: writes since the last flush kept, lost, in random subsets, or torn into
 * 512-byte sectors): at every cut the old or the new passphrase opens the disk, and through it every
 * state reads as before. qemu-img opens a sample of the crash images with the passphrase that
 * works and finds them clean. The LUKS area is all the change touches; the data stays.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { changeKeySlotsOf } from '../../../src/shared/qcow2/crypto/key-slot-change.ts';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { BlockFile } from '../../../src/shared/qcow2/io/block-file.ts';
import { rewriteImage } from '../../../src/shared/qcow2/rewrite/rewrite.ts';
import { checkEncrypted, rawOfEncrypted } from '../../helpers/encrypted-images.ts';
import { crashPoints, crashState, describeCrashPoint, FaultFile } from '../../helpers/fault-file.ts';
import { firstDifference, inBatches, tempDir, type TempDir } from '../../helpers/qemu.ts';
import { readGuestState, statesEqual, type GuestState } from './guest-state.ts';
import { crashSettings } from './runner.ts';
import { buildImage, KiB, withSnapshot } from './setups.ts';

const OLD = 'old-moo';
const NEW = 'new-bell';
/** Cheap key slots (QEMU's minimum iterations): a crash image is opened hundreds of times. */
const ITERATIONS = 1000;

let folder: TempDir;
let initial: Uint8Array;
let before: GuestState;

beforeAll(async () => {
  folder = tempDir();
  const plain = folder.file('plain.qcow2');
  await buildImage(plain, 'compat=1.1,cluster_size=4096', 256 * KiB, withSnapshot);
  const encrypted = folder.file('encrypted.qcow2');
  rewriteImage({ source: plain, target: encrypted, compression: 'keep', encryption: { kind: 'luks', passphrase: OLD, iterations: ITERATIONS, digestIterations: ITERATIONS } });
  initial = new Uint8Array(fs.readFileSync(encrypted));
  before = guestStateWith(new FaultFile(encrypted, initial, { readOnly: true }), OLD) ?? { current: new Uint8Array(0), snapshots: [] };
}, 60_000);
afterAll(() => folder.cleanup());

/** Every state read with `passphrase`, or null when it opens no key slot. */
function guestStateWith(file: BlockFile, passphrase: string): GuestState | null {
  try {
    return readGuestState(file, passphrase);
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'BAD_PASSPHRASE') return null;
    throw error;
  }
}

describe('passphrase change cut at every write', () => {
  it('leaves a disk the old or the new passphrase opens, every state reading as before; qemu-img agrees', async () => {
    const imagePath = folder.file('changing.qcow2');
    const fault = new FaultFile(imagePath, initial);
    const result = changeKeySlotsOf(fault, { passphrase: OLD, action: 'change', newPassphrase: NEW, iterations: ITERATIONS });
    expect(result).toEqual({ activeSlots: [1], added: 1, removed: [0] });
    const log = fault.log;
    const writes = log.filter((event) => event.kind !== 'flush').length;
    const failures: string[] = [];
    const seen = new Set<string>();
    const opensWith = { old: 0, new: 0, both: 0 };
    const samples: { path: string; passphrase: string; where: string }[] = [];
    let states = 0;
    for (const point of crashPoints(log, crashSettings.randomSubsets(writes), 0x5eed, crashSettings.tornSubsets(writes))) {
      states++;
      const state = crashState(imagePath, initial, log, point);
      const signature = state.signature();
      if (seen.has(signature)) continue;
      seen.add(signature);
      const where = describeCrashPoint(log, point);
      const withOld = guestStateWith(state, OLD);
      const withNew = guestStateWith(state, NEW);
      if (withOld === null && withNew === null) failures.push(`${where}: neither passphrase opens the disk`);
      for (const [name, seenState] of [['old', withOld], ['new', withNew]] as const) {
        if (seenState !== null && !statesEqual(seenState, before)) failures.push(`${where}: with the ${name} passphrase the data reads differently`);
      }
      if (withOld !== null && withNew !== null) opensWith.both++;
      else if (withOld !== null) opensWith.old++;
      else if (withNew !== null) opensWith.new++;
      // qemu-img opens every few distinct crash images (and the first ones) with a passphrase that works.
      if (seen.size <= 4 || seen.size % 16 === 0) {
        const samplePath = folder.file(`state-${seen.size}.qcow2`);
        fs.writeFileSync(samplePath, state.bytes());
        samples.push({ path: samplePath, passphrase: withNew !== null ? NEW : OLD, where });
      }
    }
    console.log(`crash: passphrase change: ${states} crash states tried (${seen.size} distinct from ${log.length} logged events; old only ${opensWith.old}, both ${opensWith.both}, new only ${opensWith.new}; ${samples.length} checked by qemu-img)`);
    expect(failures.slice(0, 12)).toEqual([]);
    // Every phase was met: before the new slot, while both open, after the old one is gone.
    expect(opensWith.old).toBeGreaterThan(0);
    expect(opensWith.both).toBeGreaterThan(0);
    expect(opensWith.new).toBeGreaterThan(0);
    // The finished change: only the new passphrase.
    const finished = new FaultFile(imagePath, fault.contents(), { readOnly: true });
    expect(guestStateWith(finished, OLD)).toBeNull();
    expect(guestStateWith(finished, NEW)).not.toBeNull();

    await inBatches(
      samples.map((sample) => async () => {
        const check = await checkEncrypted(sample.path, sample.passphrase);
        expect(check.code, `${sample.where}: qemu-img check\n${check.output}`).toBe(0);
        expect(firstDifference(await rawOfEncrypted(sample.path, sample.passphrase), before.current), `${sample.where}: qemu-img reads the current state`).toBe(-1);
      }),
      2,
    );
  }, 300_000);
});
