/**
 * Shared pieces of the benchmarks: timing a command in a child process with its peak memory, the
 * machine's description, and the row format bench/run.ts collects.
 *
 * A bench file prints human notes on stderr and one line per measurement on stdout:
 *   BENCH {"name": …, "cowbellSeconds": …, "qemuSeconds": …, "cowbellPeakMiB": …, "note": …}
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const NODE = path.join(ROOT, 'node_modules', '.bin', 'node');
/** What a user runs: the bundle when it is current (`npm run build:cli`), else the sources. */
export const CLI = path.join(ROOT, 'bin', 'cowbell');

export interface BenchRow {
  name: string;
  cowbellSeconds: number;
  qemuSeconds: number;
  /**
   * The ratio of each side's fastest round, where a bench has rounds: on a machine whose noise only
   * ever adds time (a VM's memory faults, other tenants), the fastest run is the least disturbed.
   */
  bestRatio?: number;
  /** Cowbell's peak resident memory in MiB (the whole process); null where it cannot be told apart. */
  cowbellPeakMiB: number | null;
  /** What the targets are, or anything to know about the row. */
  note?: string;
}

export function report(row: BenchRow): void {
  process.stdout.write(`BENCH ${JSON.stringify(row)}\n`);
}

export interface Measurement {
  seconds: number;
  peakMiB: number;
}

/** Where /usr/bin/time writes: a folder of this process's own (a name in /tmp another user could guess, and link elsewhere, time would follow). */
let timeFolder: string | null = null;

/** Runs a command to completion under /usr/bin/time, for its wall time and peak RSS. */
export function measure(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Measurement {
  if (timeFolder === null) {
    const made = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-time-'));
    process.once('exit', () => fs.rmSync(made, { recursive: true, force: true }));
    timeFolder = made;
  }
  const timeFile = path.join(timeFolder, 'time');
  const started = process.hrtime.bigint();
  const result = spawnSync('/usr/bin/time', ['-f', '%M', '-o', timeFile, command, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}):\n${result.stderr}`);
  const kibibytes = Number(fs.readFileSync(timeFile, 'utf8').trim().split('\n').pop());
  fs.rmSync(timeFile, { force: true });
  return { seconds, peakMiB: kibibytes / 1024 };
}

/**
 * `cowbell ARGS…`, run on the Node 24 the project installs, with Node's compile cache in the user's
 * cache folder as bin/cowbell keeps it (warmed by each bench's first, untimed run): the runs measure
 * the work, not compiling the bundle again each time.
 */
export function measureCowbell(args: string[]): Measurement {
  assertSameCli();
  return measure(NODE, [CLI, ...args]);
}

/** Whether bin/cowbell runs the bundle (built from the sources as they are) or, without one or with a stale one, the sources. */
function cliRunsBundle(): boolean {
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'out', 'cli', 'sources.json'), 'utf8')) as [string, number][];
    return manifest.length > 0 && manifest.every(([file, mtimeMs]) => fs.statSync(path.join(ROOT, file)).mtimeMs === mtimeMs);
  } catch {
    return false;
  }
}

let cliState: boolean | null = null;

/**
 * Every Cowbell run of a bench runs the same thing: a source edited mid-run makes the bundle stale,
 * and bin/cowbell then runs the sources (start-up and memory of another program), which a median
 * would quietly mix in (it happened: peaks of 101 MiB against 68). Checked before each run, untimed.
 */
export function assertSameCli(): void {
  const runsBundle = cliRunsBundle();
  if (cliState === null) {
    cliState = runsBundle;
    if (!runsBundle) process.stderr.write('bench: bin/cowbell runs the sources (no current bundle: `npm run build:cli` builds one)\n');
  } else if (cliState !== runsBundle) {
    throw new Error('The CLI bundle went stale during the bench (a source was edited): rebuild it (`npm run build:cli`) and run the bench again');
  }
}

export function measureQemuImg(args: string[]): Measurement {
  return measure('qemu-img', args);
}

export function machine(): string {
  const cpus = os.cpus();
  const qemu = spawnSync('qemu-img', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? 'qemu-img ?';
  return `${cpus.length} × ${cpus[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${qemu}`;
}

/**
 * Flushes dirty data, pauses briefly, then has memory faulted in, so runs start alike.
 *
 * Why the last step: these VMs (Firecracker, virtio-balloon free-page reporting) hand memory that has
 * been free for about two seconds back to the host, and a run that fills hundreds of MiB of new page
 * cache from it faults it in again at up to 40x the cost — qemu-img convert of the 1 GiB mixed disk
 * took 3.7-9.1 s after 5 s idle and 0.28-0.39 s when a process had just touched 1.5 GiB and exited
 * (4 alternating pairs). Which side drew the slow memory had decided many rows (rounds of one
 * program varied up to 11x). A short-lived process that touches PREFAULT_MIB and exits leaves that
 * much memory freshly faulted in and free for the measured run, whichever side it is; a desktop
 * without free-page reporting is always in that state. BENCH_PREFAULT_MIB=0 turns it off.
 */
export function syncDisk(): void {
  spawnSync('sync');
  // Lets the file system settle after the previous run's output was removed.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, SETTLE_MS);
  prefaultMemory();
}

const PREFAULT_MIB = Number(process.env.BENCH_PREFAULT_MIB ?? 1536);
/** The pause after `sync` before each run (BENCH_SETTLE_MS; qemu-img's flush of a 100 MiB copy took 0.1 or 0.3 s whatever the pause, 0.5 to 3 s). */
const SETTLE_MS = Number(process.env.BENCH_SETTLE_MS ?? 500);

function prefaultMemory(): void {
  if (!(PREFAULT_MIB > 0)) return;
  const result = spawnSync(process.execPath, ['-e', `Buffer.alloc(${PREFAULT_MIB} * 1024 * 1024, 1)`], { stdio: 'ignore' });
  if (result.status !== 0) throw new Error(`faulting in ${PREFAULT_MIB} MiB before a run failed (${result.status ?? result.signal}); BENCH_PREFAULT_MIB sets the amount`);
}

/**
 * Rounds of an alternating comparison: `requested` rounded up to an even number, so that each side
 * goes first as often as it goes second. On these VMs the second run of a round is often the slow
 * one (syncDisk says why); with an odd count one side went second once more, and its median landed
 * on a slow run (compact's, for one: 1.99, 0.77, 2.16, 0.81, 1.97 s going second in rounds 1, 3, 5).
 */
export function pairedRounds(requested: number): number {
  return Math.max(2, requested + (requested % 2));
}

const ROUNDS = pairedRounds(Number(process.env.BENCH_ROUNDS ?? 5));
/** BENCH_ONLY=text runs only the comparisons whose name contains it. */
const ONLY = process.env.BENCH_ONLY;

/** The middle value; of an even count, the mean of the two middle ones. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length % 2 === 1) return sorted[middle] ?? Number.NaN;
  return ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

/** Says so when one program's rounds differ by 1.5x or more: the machine, not the program, then sets the times. */
export function spreadNote(...sides: Measurement[][]): string {
  const spread = Math.max(...sides.map((runs) => Math.max(...runs.map((run) => run.seconds)) / Math.min(...runs.map((run) => run.seconds))));
  return spread >= 1.5 ? `; noisy: rounds varied up to ${spread.toFixed(1)}x` : '';
}

/** How Cowbell's side of one run is done: its CLI in a process of its own, or an engine already loaded. */
export type CowbellRun = (output: string) => Measurement | Promise<Measurement>;

export const cowbellCli =
  (args: (output: string) => string[]): CowbellRun =>
  (output) =>
    measureCowbell(args(output));

export interface Comparison {
  folder: string;
  name: string;
  note: string;
  runCowbell: CowbellRun;
  qemuArgs: (output: string) => string[];
  extension: string;
  rounds?: number;
  /** Tries qemu-img's side this many times when it fails (a flaky step of its own, not the work measured). */
  qemuAttempts?: number;
  /** Called with both sides' outputs of the first round before they are removed; returns more to say in the note. */
  inspect?: (cowbellOutput: string, qemuOutput: string) => string;
}

function measureQemuRetrying(args: string[], attempts: number, output: string): Measurement {
  for (let attempt = 1; ; attempt++) {
    try {
      return measureQemuImg(args);
    } catch (error) {
      fs.rmSync(output, { force: true });
      if (attempt >= attempts) throw error;
    }
  }
}

/** Runs both sides ROUNDS times, alternating (who goes first too); each run writes a fresh output that is removed after. */
export async function compareRuns(comparison: Comparison): Promise<void> {
  const { folder, name, runCowbell, qemuArgs, extension } = comparison;
  if (ONLY !== undefined && !name.includes(ONLY)) return;
  const cowbell: Measurement[] = [];
  const qemu: Measurement[] = [];
  let extra = '';
  for (let round = 0; round < pairedRounds(comparison.rounds ?? ROUNDS); round++) {
    // Who goes first alternates: a run can leave the machine's caches better or worse for the next.
    const outputs = { qemu: path.join(folder, `qemu-${round}.${extension}`), cowbell: path.join(folder, `cowbell-${round}.${extension}`) };
    for (const side of round % 2 === 0 ? (['qemu', 'cowbell'] as const) : (['cowbell', 'qemu'] as const)) {
      syncDisk();
      const measurement = side === 'qemu' ? measureQemuRetrying(qemuArgs(outputs.qemu), comparison.qemuAttempts ?? 1, outputs.qemu) : await runCowbell(outputs.cowbell);
      (side === 'qemu' ? qemu : cowbell).push(measurement);
      const memory = Number.isNaN(measurement.peakMiB) ? '' : `, ${measurement.peakMiB.toFixed(0)} MiB`;
      process.stderr.write(`  ${name} ${side} round ${round + 1}: ${measurement.seconds.toFixed(2)} s${memory}\n`);
    }
    if (round === 0 && comparison.inspect !== undefined) extra = comparison.inspect(outputs.cowbell, outputs.qemu);
    fs.rmSync(outputs.qemu, { force: true });
    fs.rmSync(outputs.cowbell, { force: true });
  }
  const peak = Math.max(...cowbell.map((run) => run.peakMiB));
  report({
    name,
    cowbellSeconds: median(cowbell.map((run) => run.seconds)),
    qemuSeconds: median(qemu.map((run) => run.seconds)),
    bestRatio: Math.min(...cowbell.map((run) => run.seconds)) / Math.min(...qemu.map((run) => run.seconds)),
    cowbellPeakMiB: Number.isNaN(peak) ? null : peak,
    note: `${comparison.note}${extra}${spreadNote(cowbell, qemu)}`,
  });
}
