/**
 * A seeded-random campaign of damaged LUKS volumes (the LUKS2-with-LVM and LUKS1 partitions
 * cryptsetup made, luks-disks.ts, each as a whole disk) through the fuzz harness's luks-walk target
 * (test/engine/fuzz/luks-targets.ts): headers, metadata, key material and encrypted data damaged
 * (luks-mutations.ts), then the volumes found, opened with their passphrases and walked, each case
 * in a resource-limited worker. Anything but a typed error, a hang or a huge allocation is a finding.
 */
import * as fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildLuksDisk, extractPartition, LUKS_VOLUMES, type LuksFixtureDisk } from '../../../helpers/luks-disks.ts';
import { tempDir, type TempDir } from '../../../helpers/qemu.ts';
import { runWalkCampaign } from '../../fuzz/walk-campaign.ts';
import { randomLuksDamage } from './luks-mutations.ts';

const CASES = Number(process.env.LUKS_FUZZ_CASES ?? 60);
const BASE_SEED = Number(process.env.FUZZ_SEED ?? 31);

let folder: TempDir;
let disk: LuksFixtureDisk;

beforeAll(async () => {
  folder = tempDir();
  disk = await buildLuksDisk(folder.path, 'a');
}, 120_000);
afterAll(() => folder.cleanup());

describe('damaged LUKS volumes through the fuzz harness', { timeout: 600_000 }, () => {
  it.each([2, 3])(`partition %i: ${CASES} damaged cases end in typed errors (or read)`, async (partition) => {
    const pristine = new Uint8Array(fs.readFileSync(extractPartition(disk, disk.raw, partition, folder.file(`p${partition}.raw`))));
    const payloadOffset = LUKS_VOLUMES.find((volume) => volume.partition === partition)!.payloadOffset;
    const { pristineOutcome, tally, findings } = await runWalkCampaign({
      folder: folder.file(`fuzz-${partition}`),
      target: 'luks-walk',
      pristine,
      cases: CASES,
      seed: BASE_SEED + partition,
      damage: (random) => randomLuksDamage(pristine, payloadOffset, random),
    });
    expect(pristineOutcome).toBe('ok');
    expect(findings).toEqual([]);
    // Volumes found locked or damaged still list: the walk ends 'ok' in most cases; the damage is seen where it lands.
    expect(tally['ok'] ?? 0).toBeGreaterThan(CASES / 4);
  });
});
