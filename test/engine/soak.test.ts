/**
 * The soak: thousands of random guest writes, zero writes, discards and snapshot create, apply and
 * delete against a model of every snapshot's data (soak/model.ts), on five image layouts (empty,
 * compressed by qemu-img, an overlay on a backing file).
 * `npm test` runs a short soak; `npm run soak` (SOAK_FULL=1) a long one. Seeded: COWBELL_SOAK_SEED
 * replays a run, and fast-check prints the shrunk failing sequence with the seed and path to replay it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { qemuImg, tempDir, type TempDir } from '../helpers/qemu.ts';
import { compressibleBytes, SeededRandom } from '../helpers/seeded-random.ts';
import { describeCounts, newCounts, runSoak, soakCommands, type SoakConfig, type SoakSettings, type SoakStart } from './soak/model.ts';

const FULL = process.env.SOAK_FULL === '1';
const SEED = Number(process.env.COWBELL_SOAK_SEED ?? 20260512);
const KiB = 1024;

/** Runs per layout and commands per run (each run draws up to maxCommands): a few thousand steps per layout in npm test, about 50,000 in npm run soak. */
const plan = FULL ? { runs: 20, maxCommands: 5000 } : { runs: 6, maxCommands: 1500 };
const settings: SoakSettings = FULL ? { compareEvery: 25, qemuEvery: 250, maxSnapshots: 12 } : { compareEvery: 50, qemuEvery: 300, maxSnapshots: 8 };

const configs: SoakConfig[] = [
  // Small clusters: many L2 tables (32 KiB of guest each), so shared and private tables mix.
  { name: 'v3, 512-byte clusters', options: 'compat=1.1,cluster_size=512,refcount_bits=16', clusterSize: 512, virtualSize: 160 * KiB + 512, version: 3, start: 'empty' },
  { name: 'v2, 4 KiB clusters', options: 'compat=0.10,cluster_size=4096', clusterSize: 4096, virtualSize: 256 * KiB, version: 2, start: 'empty' },
  { name: 'v3, 16 KiB clusters, extended L2, 64-bit refcounts', options: 'compat=1.1,cluster_size=16384,extended_l2=on,refcount_bits=64', clusterSize: 16384, virtualSize: 512 * KiB + 1536, version: 3, start: 'empty' },
  // Several compressed clusters share a host cluster: copy-on-write and deletes must count them right.
  { name: 'v3, 4 KiB clusters, starting compressed by qemu-img convert -c', options: 'compat=1.1,cluster_size=4096', clusterSize: 4096, virtualSize: 192 * KiB, version: 3, start: 'compressed' },
  // Unallocated clusters show the backing file; v3 zero flags hide it.
  { name: 'v3, 1 KiB clusters, an overlay on a raw backing file', options: 'compat=1.1,cluster_size=1024', clusterSize: 1024, virtualSize: 96 * KiB, version: 3, start: 'backing' },
];

/** The starting image at `imagePath` (and its backing file beside it), as qemu-img makes it. */
async function makeStart(config: SoakConfig, imagePath: string, seed: number): Promise<SoakStart> {
  const data = new Uint8Array(config.virtualSize);
  if (config.start !== 'empty') {
    data.set(compressibleBytes(config.virtualSize / 2, seed));
    data.set(new SeededRandom(seed).bytes(config.virtualSize / 4), config.virtualSize / 2);
  }
  const raw = `${imagePath}.base.raw`;
  if (config.start === 'empty') await qemuImg(['create', '-q', '-f', 'qcow2', '-o', config.options, imagePath, String(config.virtualSize)]);
  else fs.writeFileSync(raw, data);
  if (config.start === 'compressed') await qemuImg(['convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', config.options, raw, imagePath]);
  if (config.start === 'backing') await qemuImg(['create', '-q', '-f', 'qcow2', '-o', config.options, '-b', path.basename(raw), '-F', 'raw', imagePath]);
  return { image: new Uint8Array(fs.readFileSync(imagePath)), data };
}

let folder: TempDir;
beforeAll(() => {
  folder = tempDir();
});
afterAll(() => folder.cleanup());

describe('soak: random guest and snapshot operations against a model of every state', () => {
  configs.forEach((config, index) => {
    it(config.name, async () => {
      // The run's file lives beside the start's backing file, so the relative backing name resolves.
      const start = await makeStart(config, folder.file(`start-${index}.qcow2`), SEED + index);
      const counts = newCounts();
      const diskPath = folder.file(`soak-${index}.qcow2`);
      await fc.assert(
        fc.asyncProperty(soakCommands(config, settings, counts, plan.maxCommands), (commands) => runSoak(start, diskPath, config, settings, counts, commands)),
        { seed: SEED + index, numRuns: plan.runs },
      );
      console.log(describeCounts(`${config.name} (seed ${SEED + index})`, counts));
      expect(counts.steps).toBeGreaterThan(FULL ? 20_000 : 2500);
    }, FULL ? 3_600_000 : 120_000);
  });
});
