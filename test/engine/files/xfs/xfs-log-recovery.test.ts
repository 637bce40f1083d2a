/**
 * XFS volumes saved while mounted (a snapshot of a running guest): their latest changes lie in the
 * log, committed but not yet written in place. Made by the kernel's own XFS and shut down with its
 * log flushed (fixtures/make-xfs-log-fixtures.py); what the kernel reported after replaying the log
 * is the reference (xfs-log-manifests.json). Version 5 with 4 KiB and 1 KiB blocks, records over
 * 32 KiB (extra header blocks), a log whose replayed part runs across its end, new inode chunks,
 * extent trees, folders in every form, reflinked files written into, and block-map changes a
 * reflink left unfinished (BUIs the kernel finishes after replay). Then seeded-random damage to
 * the log's records (their CRC-32C written again, so it reaches the replay) through the fuzz
 * harness's xfs-walk target: a replay or a refusal by name, never anything but a typed error.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { diffStatesByName } from '../../../../src/shared/qcow2/files/files-diff.ts';
import { openStateFiles } from '../../../../src/shared/qcow2/files/state-files.ts';
import { readDiff } from '../../../../src/shared/qcow2/snapshots/operations.ts';
import { recoverXfsLog } from '../../../../src/shared/qcow2/files/xfs/xfs-log.ts';
import { readXfsSuperblock } from '../../../../src/shared/qcow2/files/xfs/xfs-superblock.ts';
import { describeDifferences, expectAsManifest, expectedDifferences, readManifests, type Manifest } from '../../../helpers/guest-manifest.ts';
import { vouchingOpener } from '../../../helpers/vouching-opener.ts';
import { qemuImg, tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { memoryVolumeBytes } from '../../../helpers/raw-volume-bytes.ts';
import { SeededRandom } from '../../../helpers/seeded-random.ts';
import { runWalkCampaign } from '../../fuzz/walk-campaign.ts';
import { applyPatches } from '../ntfs/ntfs-mutations.ts';
import { findLogRecords, randomLogDamage } from './xfs-log-mutations.ts';

const CASES = Number(process.env.XFS_LOG_FUZZ_CASES ?? 40);
/** The state whose log is damaged (wrapped: small and across the log's end; by hand also reflink, v5, big-records, current). */
const FUZZ_STATE = process.env.XFS_LOG_FUZZ_STATE ?? 'wrapped';
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 30);

const FIXTURES = path.join(import.meta.dirname, 'fixtures');
const manifests = readManifests<Record<string, Record<string, Manifest>>>(path.join(FIXTURES, 'xfs-log-manifests.json.gz'));

let folder: TempDir;
let disk: string;

beforeAll(() => {
  folder = tempDir();
  disk = folder.file('xfs-log.qcow2');
  fs.writeFileSync(disk, gunzipSync(fs.readFileSync(path.join(FIXTURES, 'xfs-log.qcow2.gz'))));
});
afterAll(() => folder.cleanup());

describe('XFS volumes saved while mounted, their logs replayed in memory', { timeout: 180_000 }, () => {
  it.each([
    ['v5', 'log-v5'],
    ['big-records', 'log-bigrec'],
    ['wrapped', 'log-wrapped'],
    ['reflink', 'log-reflink'],
    ['current', 'log-1k'],
  ])('%s reads every entry as the kernel reported it after replaying the log', async (state, label) => {
    const files = await openStateFiles(disk, state);
    try {
      expect(files.volumes).toMatchObject([{ name: '', table: 'none', filesystem: 'xfs', label }]);
      expect(files.volumes[0]!.problem).toBeUndefined();
      expect(files.volumes[0]!.caution).toBeUndefined();
      await expectAsManifest(files, manifests['log']![state]!);
    } finally {
      await files.close();
    }
  });

  it('finds what changed between two states saved while mounted, its shortcut through unchanged folders counting what either log replayed as changed', async () => {
    const ranges = () => readDiff(disk, 'v5', 'big-records').ranges;
    const result = await diffStatesByName(vouchingOpener(disk, false), 'v5', 'big-records', ranges);
    const found = describeDifferences(result);
    expect(found).toEqual(expectedDifferences(manifests['log']!['v5']!, manifests['log']!['big-records']!));
    expect(found.length).toBeGreaterThan(100);
    const vouched: string[] = [];
    expect(await diffStatesByName(vouchingOpener(disk, true, vouched), 'v5', 'big-records', ranges)).toEqual(result);
  });
});

describe('XFS log replay on damaged records', { timeout: 600_000 }, () => {
  it('replays or refuses by name, with typed errors only, whatever the records say', async () => {
    const raw = folder.file(`${FUZZ_STATE}.raw`);
    await qemuImg(['convert', '-O', 'raw', ...(FUZZ_STATE === 'current' ? [] : ['-l', FUZZ_STATE]), disk, raw]);
    const pristine = new Uint8Array(fs.readFileSync(raw));
    const records = await findLogRecords(pristine);
    expect(records.length).toBeGreaterThan(5);
    const { pristineOutcome, tally, findings } = await runWalkCampaign({
      folder: folder.file('fuzz-log'),
      target: 'xfs-walk',
      pristine,
      cases: CASES,
      seed: BASE_SEED,
      damage: (random) => randomLogDamage(pristine, records, random),
    });
    expect(pristineOutcome).toBe('ok');
    expect(findings).toEqual([]);
    expect(tally['ok'] ?? 0).toBeGreaterThan(0);
    // The same damage, replayed here: past the records' checks, some logs still replay and some are refused with a reason.
    const outcomes = { replayed: 0, refused: 0 };
    for (let index = 0; index < CASES; index++) {
      const damaged = memoryVolumeBytes(applyPatches(pristine, randomLogDamage(pristine, records, new SeededRandom(BASE_SEED * 100_003 + index))));
      const superblock = await readXfsSuperblock(damaged).catch(() => null);
      if (superblock === null) continue;
      const state = await recoverXfsLog(damaged, superblock).catch(() => null);
      if (state?.caution === null && state.replayedSectors.length > 0) outcomes.replayed++;
      else if (state?.caution?.includes('could not replay its log') === true) outcomes.refused++;
    }
    expect(outcomes.replayed).toBeGreaterThan(CASES / 20);
    expect(outcomes.refused).toBeGreaterThan(CASES / 20);
  });
});
