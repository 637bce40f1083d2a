/**
 * Snapshot create, apply and delete on an image with 1 GiB allocated and 10 snapshots, beside
 * `qemu-img snapshot -c/-a/-d` on an identical copy, in the same run. Cowbell is timed inside a
 * warm worker (engine loaded, one warm-up round done: the figure the app's job pool sees) and as
 * a cold `bin/cowbell snapshot …` process. Each operation runs ROUNDS times, the sides
 * alternating, with `sync` before every run; the median counts. Each row's note adds the median
 * CPU time of both sides (user + system), the steadier figure when other work shares the machine.
 * Then the space usage of a 100 GiB image with 20 snapshots and data spread over it (so that
 * there are hundreds of L2 tables), beside `qemu-img check`, which walks the same tables.
 * Targets (issue 4): ratio ≤ 1.5 warm; usage under a second.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { measure, report, ROOT, syncDisk } from './lib.ts';
import type { WorkerOp, WorkerReply, WorkerRequest } from './snapshot-worker.ts';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const LAUNCHER = path.join(ROOT, 'bin', 'cowbell');
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-'));

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function run(command: string, args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8', maxBuffer: 64 * MiB });
  if (result.status !== 0) throw new Error(`${command} ${args.slice(0, 6).join(' ')} failed (${result.status}):\n${result.stderr}`);
}

/** qemu-io commands in batches (one process each), for images made with data where the test wants it. */
function qemuIo(image: string, commands: string[]): void {
  for (let start = 0; start < commands.length; start += 200) {
    run('qemu-io', ['-f', 'qcow2', ...commands.slice(start, start + 200).flatMap((command) => ['-c', command]), image]);
  }
}

interface Timing {
  seconds: number;
  cpuSeconds: number;
}

/** A command's wall time and CPU time (user + system, from /usr/bin/time): on a busy machine the CPU time is the steadier figure. */
function timed(command: string, args: string[]): Timing {
  const timeFile = path.join(folder, 'time');
  const started = process.hrtime.bigint();
  const result = spawnSync('/usr/bin/time', ['-f', '%U %S', '-o', timeFile, command, ...args], { encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}):\n${result.stderr}`);
  const [user = 0, system = 0] = (fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
  return { seconds, cpuSeconds: user + system };
}

/** A worker thread with the engine loaded; `call` runs one operation and resolves with its time inside the worker. */
class WarmEngine {
  private readonly worker = new Worker(new URL('./snapshot-worker.ts', import.meta.url));

  call(op: WorkerOp, image: string, name = ''): Promise<Timing> {
    return new Promise((resolve, reject) => {
      this.worker.once('message', (reply: WorkerReply) => (reply.error === undefined ? resolve(reply) : reject(new Error(`${op} ${name}: ${reply.error}`))));
      this.worker.postMessage({ op, image, name } satisfies WorkerRequest);
    });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

function peakMiB(): number {
  return process.resourceUsage().maxRSS / 1024;
}

/** 1 GiB written, then 10 snapshots with 8 MiB of writes spread over the disk before each. */
function makeSnapshotImage(image: string, allocated: number, snapshots: number): void {
  run('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(4 * allocated)]);
  qemuIo(image, [`write -P 90 0 ${allocated}`]);
  for (let index = 0; index < snapshots; index++) {
    run('qemu-img', ['snapshot', '-c', `s${index}`, image]);
    const writes: string[] = [];
    for (let part = 0; part < 8; part++) writes.push(`write -P ${index + 1} ${part * (allocated / 2) + index * MiB} ${MiB}`);
    qemuIo(image, writes);
  }
}

/** 100 GiB virtual, 64 KiB written every 256 MiB, then 20 snapshots with 50 writes spread over the disk after each. */
function makeUsageImage(image: string): void {
  const virtual = 100 * GiB;
  run('qemu-img', ['create', '-q', '-f', 'qcow2', image, String(virtual)]);
  const first: string[] = [];
  for (let offset = 0; offset < virtual; offset += 256 * MiB) first.push(`write -P 1 ${offset} 64k`);
  qemuIo(image, first);
  for (let index = 0; index < 20; index++) {
    run('qemu-img', ['snapshot', '-c', `u${index}`, image]);
    const writes: string[] = [];
    for (let part = 0; part < 50; part++) writes.push(`write -P ${index + 2} ${part * 2 * GiB + (index + 1) * 64 * MiB} 64k`);
    qemuIo(image, writes);
  }
}

interface Sides {
  qemu: Timing[];
  warm: Timing[];
  cold: Timing[];
  coldPeak: number;
}

const seconds = (timings: Timing[]): number => median(timings.map((timing) => timing.seconds));
const cpu = (timings: Timing[]): string => `${(median(timings.map((timing) => timing.cpuSeconds)) * 1000).toFixed(0)} ms`;

const QEMU_FLAG: Record<'create' | 'apply' | 'delete', string> = { create: '-c', apply: '-a', delete: '-d' };

async function main(): Promise<void> {
  const engine = new WarmEngine();
  try {
    process.stderr.write(`making images in ${folder}\n`);
    const warmUp = path.join(folder, 'warm-up.qcow2');
    makeSnapshotImage(warmUp, 64 * MiB, 2);
    // The warm-up round: every operation once, so the timed ones run on loaded, compiled code.
    await engine.call('create', warmUp, 'warm-up');
    await engine.call('apply', warmUp, 's1');
    await engine.call('delete', warmUp, 'warm-up');
    await engine.call('usage', warmUp);
    await engine.call('list', warmUp);

    const source = path.join(folder, 'source.qcow2');
    makeSnapshotImage(source, GiB, 10);
    const images = { qemu: path.join(folder, 'qemu.qcow2'), warm: path.join(folder, 'warm.qcow2'), cold: path.join(folder, 'cold.qcow2') };
    for (const copy of Object.values(images)) fs.copyFileSync(source, copy);
    fs.rmSync(source);

    const results = new Map<'create' | 'apply' | 'delete', Sides>();
    for (let round = 0; round < ROUNDS; round++) {
      const steps: ['create' | 'apply' | 'delete', string][] = [['create', `bench ${round}`], ['apply', 's5'], ['delete', `bench ${round}`]];
      for (const [op, name] of steps) {
        const sides = results.get(op) ?? { qemu: [], warm: [], cold: [], coldPeak: 0 };
        results.set(op, sides);
        syncDisk();
        const qemu = timed('qemu-img', ['snapshot', QEMU_FLAG[op], name, images.qemu]);
        sides.qemu.push(qemu);
        syncDisk();
        const warm = await engine.call(op, images.warm, name);
        sides.warm.push(warm);
        syncDisk();
        const cold = timed(LAUNCHER, ['snapshot', op, images.cold, name]);
        sides.cold.push(cold);
        process.stderr.write(`  ${op} round ${round + 1}: qemu-img ${qemu.seconds.toFixed(3)} s (CPU ${qemu.cpuSeconds.toFixed(3)}), warm ${warm.seconds.toFixed(3)} s (CPU ${warm.cpuSeconds.toFixed(3)}), cold CLI ${cold.seconds.toFixed(3)} s (CPU ${cold.cpuSeconds.toFixed(3)})\n`);
      }
    }
    // One more cold run per operation for the peak memory (timed() does not measure it).
    for (const [op, name] of [['create', 'peak'], ['apply', 's5'], ['delete', 'peak']] as const) {
      const sides = results.get(op);
      if (sides) sides.coldPeak = measure(LAUNCHER, ['snapshot', op, images.cold, name]).peakMiB;
    }
    for (const [op, sides] of results) {
      report({ name: `snapshot ${op}, 1 GiB allocated, 10 snapshots (warm worker)`, cowbellSeconds: seconds(sides.warm), qemuSeconds: seconds(sides.qemu), cowbellPeakMiB: peakMiB(), note: `target ratio ≤ 1.5; CPU ${cpu(sides.warm)} vs ${cpu(sides.qemu)}` });
    }
    for (const [op, sides] of results) {
      report({ name: `snapshot ${op}, 1 GiB allocated, 10 snapshots (cold bin/cowbell)`, cowbellSeconds: seconds(sides.cold), qemuSeconds: seconds(sides.qemu), cowbellPeakMiB: sides.coldPeak, note: `informational, Node start-up included; CPU ${cpu(sides.cold)} vs ${cpu(sides.qemu)}` });
    }
    for (const copy of Object.values(images)) fs.rmSync(copy);

    const big = path.join(folder, 'usage-100g.qcow2');
    makeUsageImage(big);
    const usage = { warm: [] as Timing[], qemu: [] as Timing[], cold: [] as Timing[], list: [] as Timing[], qemuList: [] as Timing[] };
    for (let round = 0; round < 3; round++) {
      usage.qemu.push(timed('qemu-img', ['check', '-q', big]));
      usage.warm.push(await engine.call('usage', big));
      usage.cold.push(timed(LAUNCHER, ['usage', '--json', big]));
      usage.qemuList.push(timed('qemu-img', ['snapshot', '-l', big]));
      usage.list.push(await engine.call('list', big));
      process.stderr.write(`  usage round ${round + 1}: warm ${usage.warm.at(-1)?.seconds.toFixed(3)} s (CPU ${usage.warm.at(-1)?.cpuSeconds.toFixed(3)}), cold CLI ${usage.cold.at(-1)?.seconds.toFixed(3)} s, qemu-img check ${usage.qemu.at(-1)?.seconds.toFixed(3)} s; tree ${usage.list.at(-1)?.seconds.toFixed(3)} s\n`);
    }
    const coldPeak = measure(LAUNCHER, ['usage', '--json', big]).peakMiB;
    report({ name: 'usage, 100 GiB virtual, 20 snapshots (warm worker)', cowbellSeconds: seconds(usage.warm), qemuSeconds: seconds(usage.qemu), cowbellPeakMiB: peakMiB(), note: `target < 1 s; peer: qemu-img check; CPU ${cpu(usage.warm)} vs ${cpu(usage.qemu)}` });
    report({ name: 'usage, 100 GiB virtual, 20 snapshots (cold bin/cowbell)', cowbellSeconds: seconds(usage.cold), qemuSeconds: seconds(usage.qemu), cowbellPeakMiB: coldPeak, note: `informational; peer: qemu-img check; CPU ${cpu(usage.cold)} vs ${cpu(usage.qemu)}` });
    report({ name: 'snapshot list (tree + usage), 100 GiB, 20 snapshots (warm)', cowbellSeconds: seconds(usage.list), qemuSeconds: seconds(usage.qemuList), cowbellPeakMiB: peakMiB(), note: `informational; peer: qemu-img snapshot -l; CPU ${cpu(usage.list)} vs ${cpu(usage.qemuList)}` });
  } finally {
    await engine.stop();
    fs.rmSync(folder, { recursive: true, force: true });
  }
}

await main();
