/**
 * Replays one fuzz case in this process, for debugging with full stack traces:
 *   node test/engine/fuzz/replay.ts test/engine/fuzz/regressions/<id>.json [target …]
 * Prints each target's outcome and CPU time; leaves the image in a temp folder when --keep is given.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { tempDir } from '../../helpers/qemu.ts';
import { regressionImage, type RegressionFixture } from './regressions.ts';
import { buildSeed } from './seeds.ts';
import { TARGETS } from './targets.ts';
import { CHANGE_TARGETS } from './change-targets.ts';

const [fixturePath, ...rest] = process.argv.slice(2);
if (fixturePath === undefined) {
  console.error('usage: node test/engine/fuzz/replay.ts <fixture.json> [--keep] [target …]');
  process.exit(2);
}
const keep = rest.includes('--keep');
const only = rest.filter((argument) => argument !== '--keep');
const fixture = JSON.parse(fs.readFileSync(fixturePath, 'utf8')) as RegressionFixture;
const folder = tempDir();
try {
  const seed = await buildSeed(folder.path, fixture.seed);
  for (const companion of seed.companions) fs.writeFileSync(folder.file(companion.name), companion.bytes);
  const file = folder.file('image.qcow2');
  fs.writeFileSync(file, regressionImage(fixture, () => seed.bytes, path.dirname(path.resolve(fixturePath))));
  console.log(`${fixture.seed}: ${fixture.mutations.map((mutation) => mutation.label).join('; ')}`);
  for (const target of [...TARGETS, ...CHANGE_TARGETS].filter((entry) => only.length === 0 || only.includes(entry.name))) {
    const started = process.threadCpuUsage();
    let outcome = 'ok';
    try {
      await target.run(file);
    } catch (error) {
      outcome = error instanceof Qcow2Error ? `${error.code}: ${error.message}` : `RAW ${String((error as Error).stack ?? error)}`;
    }
    const used = process.threadCpuUsage(started);
    console.log(`${target.name.padEnd(18)} ${((used.user + used.system) / 1000).toFixed(0).padStart(6)} ms  ${outcome}`);
  }
  if (keep) console.log(`image kept in ${folder.path}`);
} finally {
  if (!keep) folder.cleanup();
}
