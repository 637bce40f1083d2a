/**
 * A big disk (issue 23): 1 TiB with 64 KiB clusters, every cluster allocated by qemu-img's metadata
 * preallocation (16 M data clusters in a sparse file: the metadata is real, the data is holes), then
 * 20 snapshots with small qemu-io writes between them (each copies a few L2 tables). Cold
 * `cowbell snapshot list`, `usage`, `check` and `diff` (bin/cowbell's bundle) beside `qemu-img
 * check` / `snapshot -l` / `map` on the same image, alternating, medians; peak RSS from /usr/bin/time.
 * Then every command once under `ulimit -v 4000000` (a 4 GB address-space limit): each must complete.
 * And the app's first tree (the snapshot table alone, shown at once) beside its full tree (space figures).
 * Targets: each ≤ 2 s and peak ≤ 64 MiB + 8 bytes per allocated cluster; check faster than qemu-img's.
 *
 * The image takes a minute or two to build and is kept between runs in the temporary folder
 * (cowbell-bench-big-disk/); delete it to build it again.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildCli } from '../scripts/build-cli.ts';
import { readSnapshotOutline, readSnapshotTree } from '../src/shared/qcow2/snapshots/operations.ts';
import { assertSameCli, CLI, measure, measureCowbell, median, NODE, report, spreadNote, syncDisk, type Measurement, pairedRounds } from './lib.ts';

const ROUNDS = pairedRounds(Number(process.env.BENCH_ROUNDS ?? 3));
const SNAPSHOTS = 20;
const folder = path.join(os.tmpdir(), 'cowbell-bench-big-disk');
const image = path.join(folder, `tib-64k-${SNAPSHOTS}-snapshots-v1.qcow2`);
const cowbell = CLI;
const ADDRESS_SPACE_KIB = 4_000_000;

function run(command: string, args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 6).join(' ')} failed (${result.status}):\n${result.stderr}`);
  return result.stdout;
}

/** Big caches and no flushes while building: otherwise each snapshot takes a minute of refcount-block write-backs. */
const buildOptions = (file: string): string => `driver=qcow2,file.filename=${file},cache.no-flush=on,l2-cache-size=256M,refcount-cache-size=64M`;

function buildImage(): void {
  fs.mkdirSync(folder, { recursive: true });
  const partial = `${image}.partial`;
  const started = Date.now();
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata,cluster_size=65536', partial, '1T']);
  const GiB = 2 ** 30;
  for (let index = 1; index <= SNAPSHOTS; index++) {
    if (index > 1) {
      const writes = [`write -P ${index} ${(index * 37) % 1000 * GiB} 64k`, `write -P ${index} ${(index * 13 + 1) * GiB} 192k`];
      run('qemu-io', ['--image-opts', ...writes.flatMap((write) => ['-c', write]), buildOptions(partial)]);
    }
    run('qemu-img', ['snapshot', '--image-opts', '-c', `s${index}`, buildOptions(partial)]);
  }
  run('qemu-io', ['--image-opts', '-c', 'write -P 99 500G 128k', buildOptions(partial)]);
  run('qemu-img', ['check', '-q', partial]);
  fs.renameSync(partial, image);
  process.stderr.write(`built ${image} in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
}

function allocatedClusters(): number {
  const check = JSON.parse(run('qemu-img', ['check', '--output=json', image])) as { 'allocated-clusters': number };
  return check['allocated-clusters'];
}

function compare(name: string, cowbellArgs: string[], qemuArgs: string[], budgetMiB: number): void {
  const ours: Measurement[] = [];
  const theirs: Measurement[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    for (const side of round % 2 === 0 ? ['qemu', 'cowbell'] : ['cowbell', 'qemu']) {
      syncDisk();
      const measurement = side === 'qemu' ? measure('qemu-img', qemuArgs) : measureCowbell(cowbellArgs);
      (side === 'qemu' ? theirs : ours).push(measurement);
      process.stderr.write(`  ${name} ${side} round ${round + 1}: ${measurement.seconds.toFixed(2)} s, ${measurement.peakMiB.toFixed(0)} MiB\n`);
    }
  }
  const qemuPeak = median(theirs.map((run) => run.peakMiB));
  report({
    name,
    cowbellSeconds: median(ours.map((run) => run.seconds)),
    qemuSeconds: median(theirs.map((run) => run.seconds)),
    bestRatio: Math.min(...ours.map((run) => run.seconds)) / Math.min(...theirs.map((run) => run.seconds)),
    cowbellPeakMiB: Math.max(...ours.map((run) => run.peakMiB)),
    note: `target ≤ 2 s, ≤ ${budgetMiB.toFixed(0)} MiB; qemu-img ${qemuArgs[0] ?? ''} ${qemuPeak.toFixed(0)} MiB; median of ${ROUNDS}${spreadNote(ours, theirs)}`,
  });
}

/** Every command once under the address-space limit; the row says which failed, if any. */
function underAddressLimit(commands: string[][]): void {
  const limited = (command: string, args: string[]): Measurement => measure('bash', ['-c', `ulimit -v ${ADDRESS_SPACE_KIB} && exec "$0" "$@"`, command, ...args]);
  const failed: string[] = [];
  let seconds = 0;
  let peak = 0;
  for (const args of commands) {
    try {
      assertSameCli();
      const measurement = limited(NODE, [cowbell, ...args]);
      seconds += measurement.seconds;
      peak = Math.max(peak, measurement.peakMiB);
    } catch (error) {
      failed.push(`${args.slice(0, 2).join(' ')}: ${(error as Error).message.split('\n').slice(1, 3).join(' ')}`);
    }
  }
  const qemu = limited('qemu-img', ['check', image]);
  report({
    name: `big disk: all ${commands.length} commands under ulimit -v ${ADDRESS_SPACE_KIB} (qemu-img check)`,
    cowbellSeconds: seconds,
    qemuSeconds: qemu.seconds,
    cowbellPeakMiB: peak,
    note: failed.length === 0 ? 'every command completed' : `FAILED: ${failed.join('; ')}`,
  });
}

/** The app's quick tree (what it draws first) beside qemu-img snapshot -l, the full tree's time in the note; in this process. */
function firstTree(): void {
  const timed = (work: () => unknown): number => {
    const started = process.hrtime.bigint();
    work();
    return Number(process.hrtime.bigint() - started) / 1e9;
  };
  const first: number[] = [];
  const full: number[] = [];
  const qemu: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    syncDisk();
    qemu.push(measure('qemu-img', ['snapshot', '-l', image]).seconds);
    first.push(timed(() => readSnapshotOutline(image)));
    full.push(timed(() => readSnapshotTree(image)));
  }
  report({
    name: 'big disk: the app’s first tree, from the snapshot table (qemu-img snapshot -l)',
    cowbellSeconds: median(first),
    qemuSeconds: median(qemu),
    bestRatio: Math.min(...first) / Math.min(...qemu),
    cowbellPeakMiB: null,
    note: `then the full tree with space figures: ${median(full).toFixed(2)} s; in the bench's own process, median of ${ROUNDS}`,
  });
}

await buildCli();
if (!fs.existsSync(image)) buildImage();
const clusters = allocatedClusters();
const budgetMiB = 64 + (8 * clusters) / 2 ** 20;
process.stderr.write(`${image}: ${clusters} allocated clusters, ${SNAPSHOTS} snapshots; memory budget ${budgetMiB.toFixed(0)} MiB\n`);
// Warms the page cache and the bundle, untimed.
measureCowbell(['info', image]);
measure('qemu-img', ['check', image]);

const commands = {
  list: ['snapshot', 'list', '--json', image],
  usage: ['usage', '--json', image],
  check: ['check', image],
  diff: ['diff', image, 's1', 'current'],
};
compare('big disk: cowbell snapshot list (qemu-img snapshot -l)', commands.list, ['snapshot', '-l', image], budgetMiB);
compare('big disk: cowbell usage (qemu-img check, the same tables)', commands.usage, ['check', image], budgetMiB);
compare('big disk: cowbell check (qemu-img check)', commands.check, ['check', image], budgetMiB);
compare('big disk: cowbell diff s1 current (qemu-img map, the active mapping)', commands.diff, ['map', '--output=json', image], budgetMiB);
underAddressLimit(Object.values(commands));
firstTree();
