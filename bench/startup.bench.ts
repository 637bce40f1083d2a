/**
 * A command line that starts like a native tool: cold `cowbell info` and `cowbell snapshot list`
 * (bin/cowbell running its bundle, out/cli) beside `qemu-img info` and `qemu-img snapshot -l` on the
 * same disk, alternating, medians of many runs. Targets (issue 20): ≤ 0.1 s, info ≤ 64 MiB peak.
 * Run on the Node 24 the project installs (what `npm exec cowbell` and scripts use).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildCli } from '../scripts/build-cli.ts';
import { measure, measureCowbell, median, report, type Measurement } from './lib.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-startup-'));

function compare(name: string, cowbellArgs: string[], qemuArgs: string[]): void {
  const ours: Measurement[] = [];
  const theirs: Measurement[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? ['qemu', 'cowbell'] : ['cowbell', 'qemu'];
    for (const side of order) {
      if (side === 'qemu') theirs.push(measure('qemu-img', qemuArgs));
      else ours.push(measureCowbell(cowbellArgs));
    }
  }
  report({
    name,
    cowbellSeconds: median(ours.map((run) => run.seconds)),
    qemuSeconds: median(theirs.map((run) => run.seconds)),
    bestRatio: Math.min(...ours.map((run) => run.seconds)) / Math.min(...theirs.map((run) => run.seconds)),
    cowbellPeakMiB: median(ours.map((run) => run.peakMiB)),
    note: `target ≤ 0.1 s${name.includes('info') ? ', ≤ 64 MiB' : ''}; median of ${ROUNDS}; Cowbell ${(median(ours.map((run) => run.seconds)) * 1000).toFixed(0)} ms`,
  });
}

try {
  await buildCli();
  const image = path.join(folder, 'disk.qcow2');
  measure('qemu-img', ['create', '-f', 'qcow2', image, '20G']);
  for (let index = 0; index < 20; index++) measure('qemu-img', ['snapshot', '-c', `s${index}`, image]);
  // Warm the file cache and the bundle once, untimed.
  measureCowbell(['info', image]);
  compare('cold cowbell info (qemu-img info)', ['info', image], ['info', image]);
  compare('cold cowbell snapshot list, 20 snapshots (qemu-img snapshot -l)', ['snapshot', 'list', image], ['snapshot', '-l', image]);
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
