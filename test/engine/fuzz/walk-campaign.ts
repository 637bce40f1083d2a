/**
 * A seeded-random campaign of damaged guest volumes through the fuzz harness's walk target of one
 * filesystem reader (filesystem-walk.ts): the undamaged volume must walk cleanly, then each case's
 * damage is applied and walked; anything but a typed error, a hang or a huge allocation is a finding.
 */
import { SeededRandom } from '../../helpers/seeded-random.ts';
import type { Patch } from '../files/ntfs/ntfs-mutations.ts';
import { DEFAULT_HARNESS, FuzzHarness } from './harness.ts';
import { describeFinding, isFinding, outcomeKey } from './oracle.ts';

export interface WalkCampaign {
  /** A folder for the harness's files. */
  folder: string;
  /** The walk target's name (ntfs-walk, xfs-walk, btrfs-walk). */
  target: string;
  pristine: Uint8Array;
  cases: number;
  seed: number;
  /** One case's damage, from its own seeded numbers. */
  damage: (random: SeededRandom) => Patch[];
  /** Cases run side by side (each lane takes every lanes-th case). */
  lanes?: number;
}

export interface WalkCampaignResult {
  /** The undamaged volume's outcome ('ok' when it walks). */
  pristineOutcome: string;
  /** Cases by outcome: 'ok' or the typed error's code. */
  tally: Record<string, number>;
  findings: string[];
}

export async function runWalkCampaign(campaign: WalkCampaign): Promise<WalkCampaignResult> {
  const harness = new FuzzHarness({ ...DEFAULT_HARNESS, folder: campaign.folder, companions: [] });
  const tally: Record<string, number> = {};
  const findings: string[] = [];
  try {
    const [pristine] = await harness.runPatched(campaign.pristine, [], [campaign.target]);
    const lanes = campaign.lanes ?? 1;
    await Promise.all(
      Array.from({ length: lanes }, async (_, lane) => {
        for (let index = lane; index < campaign.cases; index += lanes) {
          const random = new SeededRandom(campaign.seed * 100_003 + index);
          const patches = campaign.damage(random);
          const [outcome] = await harness.runPatched(campaign.pristine, patches, [campaign.target]);
          const key = outcomeKey(outcome!);
          tally[key] = (tally[key] ?? 0) + 1;
          if (isFinding(outcome!)) findings.push(`case ${index} (seed ${campaign.seed}) ${JSON.stringify(patches)}: ${describeFinding(outcome!)}`);
        }
      }),
    );
    return { pristineOutcome: outcomeKey(pristine!), tally, findings };
  } finally {
    await harness.close();
  }
}
