/**
 * commit and rebase beside `qemu-img commit` / `qemu-img rebase` on identical chains, in the same
 * run. The chain: a 1 GiB disk with 512 MiB of mixed data (base), an overlay on it with 128 MiB of
 * its own (mid), and an overlay on that with 192 MiB spread over the disk (top).
 *  - commit: top into mid, top emptied (both tools' defaults);
 *  - rebase: top onto base in safe mode (mid's data compared and copied into top).
 * The same chain at 4× (a 4 GiB disk, 2 GiB, 512 MiB and 768 MiB) gives informational rows: a
 * Cowbell run starts Node and loads its bundle (~0.04 s here, qemu-img ~0.01 s), which at 1 GiB is
 * a third of the figure; at 4× the work weighs more than the start-up.
 * Each round copies the untouched chain afresh for each side (not timed), then the sides run
 * alternately, after a `sync`. Cowbell runs as a user runs it, `bin/cowbell` (its bundle when
 * `npm run build:cli` made a current one: start-up is part of the figure). Target (issue 20): ratio ≤ 1.0.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { measureCowbell, measureQemuImg, median, report, spreadNote, syncDisk, type Measurement, pairedRounds } from './lib.ts';
import { writeMixedImage } from './mixed-image.ts';

const MiB = 1024 * 1024;
const ROUNDS = pairedRounds(Number(process.env.BENCH_ROUNDS ?? 3));
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-chain-'));

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 6).join(' ')} failed (${result.status}):\n${result.stderr}`);
}

/** qemu-io writes, 200 to a process. */
function qemuIo(image: string, commands: string[]): void {
  for (let start = 0; start < commands.length; start += 200) run('qemu-io', ['-f', 'qcow2', ...commands.slice(start, start + 200).flatMap((command) => ['-c', command]), image]);
}

/** The chain at `scale` (1: a 1 GiB disk) in its own folder, which it returns. */
function makeChain(scale: number): string {
  const pristine = path.join(folder, `pristine-${scale}`);
  fs.mkdirSync(pristine);
  const raw = path.join(folder, 'base.raw');
  writeMixedImage(raw, scale * 512 * MiB);
  run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, path.join(pristine, 'base.qcow2')]);
  run('qemu-img', ['resize', '-q', path.join(pristine, 'base.qcow2'), String(scale * 1024 * MiB)]);
  fs.rmSync(raw);
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(pristine, 'mid.qcow2')]);
  // At scale 1: 128 MiB in 1 MiB pieces every 8 MiB; then 192 MiB in 1 MiB pieces every 5 MiB (some over mid's, some over zeros).
  qemuIo(path.join(pristine, 'mid.qcow2'), Array.from({ length: scale * 128 }, (_, index) => `write -P ${(index % 250) + 1} ${index * 8 * MiB} 1M`));
  run('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', 'mid.qcow2', '-F', 'qcow2', path.join(pristine, 'top.qcow2')]);
  qemuIo(path.join(pristine, 'top.qcow2'), Array.from({ length: scale * 192 }, (_, index) => `write -P ${(index % 200) + 3} ${index * 5 * MiB + 64 * 1024} 1M`));
  return pristine;
}

/** A fresh copy of the chain in `pristine` for one run. */
function freshChain(pristine: string, name: string): string {
  const target = path.join(folder, name);
  fs.rmSync(target, { recursive: true, force: true });
  fs.mkdirSync(target);
  for (const file of fs.readdirSync(pristine)) fs.copyFileSync(path.join(pristine, file), path.join(target, file));
  return target;
}

/** Both sides' guest data of the top file after one round, compared by qemu-img (a bench of a wrong result is no bench). */
function sameResult(cowbellTop: string, qemuTop: string): string {
  const result = spawnSync('qemu-img', ['compare', '-q', cowbellTop, qemuTop]);
  return result.status === 0 ? '; results identical (qemu-img compare)' : '; RESULTS DIFFER';
}

function compare(pristine: string, name: string, note: string, cowbellArgs: (top: string) => string[], qemuArgs: (top: string) => string[]): void {
  const cowbell: Measurement[] = [];
  const qemu: Measurement[] = [];
  let extra = '';
  for (let round = 0; round < ROUNDS; round++) {
    const tops = { cowbell: path.join(freshChain(pristine, 'cowbell'), 'top.qcow2'), qemu: path.join(freshChain(pristine, 'qemu'), 'top.qcow2') };
    for (const side of round % 2 === 0 ? (['qemu', 'cowbell'] as const) : (['cowbell', 'qemu'] as const)) {
      syncDisk();
      const measurement = side === 'qemu' ? measureQemuImg(qemuArgs(tops.qemu)) : measureCowbell(cowbellArgs(tops.cowbell));
      (side === 'qemu' ? qemu : cowbell).push(measurement);
      process.stderr.write(`  ${name} ${side} round ${round + 1}: ${measurement.seconds.toFixed(2)} s, ${measurement.peakMiB.toFixed(0)} MiB\n`);
    }
    if (round === 0) extra = sameResult(tops.cowbell, tops.qemu);
  }
  report({
    name,
    cowbellSeconds: median(cowbell.map((entry) => entry.seconds)),
    qemuSeconds: median(qemu.map((entry) => entry.seconds)),
    bestRatio: Math.min(...cowbell.map((entry) => entry.seconds)) / Math.min(...qemu.map((entry) => entry.seconds)),
    cowbellPeakMiB: Math.max(...cowbell.map((entry) => entry.peakMiB)),
    note: `${note}${extra}${spreadNote(cowbell, qemu)}`,
  });
}

try {
  const commit = (top: string): string[] => ['commit', '-q', top];
  const rebase = (top: string): string[] => ['rebase', '-b', 'base.qcow2', '-F', 'qcow2', top];
  let pristine = makeChain(1);
  compare(pristine, 'commit 192 MiB overlay into its backing file (then emptied)', 'goal ratio ≤ 1.0 (issue 20)', commit, commit);
  compare(pristine, 'rebase (safe) 1 GiB disk onto the bottom of its chain', 'goal ratio ≤ 1.0 (issue 20)', rebase, rebase);
  fs.rmSync(pristine, { recursive: true });
  pristine = makeChain(4);
  compare(pristine, 'commit 768 MiB overlay (the chain at 4×)', 'informational: start-up weighs less', commit, commit);
  compare(pristine, 'rebase (safe) 4 GiB disk (the chain at 4×)', 'informational: start-up weighs less', rebase, rebase);
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
