/**
 * Disks for the compress/compact/save-as flows of the app (main and e2e tests), made by qemu-img and
 * qemu-io, and the checks those flows end with, asked of qemu-img. Synchronous, so a Playwright test
 * can call them between steps as easily as a main test.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HELPER_THREAD_NAMES } from '../../src/shared/qcow2/io/helper-threads.ts';

export const MiB = 1024 * 1024;

/**
 * Random letters and spaces: deflate gets them to about 60% at ~45 MB/s per core here, so a
 * compress of a few tens of MiB keeps a thread busy for a second or more.
 */
export function letterBytes(length: number): Buffer {
  const alphabet = Buffer.from('abcdefghijklmnopqrstuvwxyz      \n');
  const bytes = randomBytes(length);
  for (let index = 0; index < length; index++) bytes[index] = alphabet[(bytes[index] ?? 0) % alphabet.length] ?? 0x20;
  return bytes;
}

function qemuIoWrite(image: string, command: string): void {
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', command, image], { stdio: 'ignore' });
}

/** Writes `length` bytes of letters at `offset` through qemu-io (from a file, as `write -s` takes it). */
function writeLetters(image: string, offset: number, length: number): void {
  const source = `${image}.letters`;
  fs.writeFileSync(source, letterBytes(length));
  try {
    qemuIoWrite(image, `write -s ${source} ${offset} ${length}`);
  } finally {
    fs.rmSync(source, { force: true });
  }
}

export interface SnapshottedDisk {
  path: string;
  snapshots: string[];
}

/** The guest size of makeSnapshottedDisk's disks: room for what it writes, and little more, so whole-state digests stay quick. */
export function snapshottedDiskSize(dataMiB: number): number {
  return (2 * dataMiB + 16) * MiB;
}

/**
 * A qcow2 disk with `dataMiB` of letters, a snapshot “installed”, then more letters and a patterned
 * MiB over the start, a snapshot “updated”, and a change since: three different states.
 */
export function makeSnapshottedDisk(folder: string, name: string, dataMiB: number, options: { compat?: '0.10' | '1.1' } = {}): SnapshottedDisk {
  const image = path.join(folder, name);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `compat=${options.compat ?? '1.1'}`, image, String(snapshottedDiskSize(dataMiB))]);
  writeLetters(image, 0, dataMiB * MiB);
  execFileSync('qemu-img', ['snapshot', '-c', 'installed', image]);
  writeLetters(image, dataMiB * MiB, Math.max(1, dataMiB / 2) * MiB);
  qemuIoWrite(image, `write -P 0x33 0 ${MiB}`);
  execFileSync('qemu-img', ['snapshot', '-c', 'updated', image]);
  qemuIoWrite(image, `write -P 0x5a ${4 * MiB} ${MiB}`);
  return { path: image, snapshots: ['installed', 'updated'] };
}

/** `qemu-img check --output=json` and its exit code (0 clean). */
export function qemuCheckReport(image: string): { code: number; corruptions: number; leaks: number; compressedClusters: number; allocatedClusters: number } {
  let stdout: string;
  let code = 0;
  try {
    stdout = execFileSync('qemu-img', ['check', '-U', '--output=json', image], { encoding: 'utf8' });
  } catch (error) {
    const failed = error as { status?: number; stdout?: string };
    code = failed.status ?? -1;
    stdout = failed.stdout ?? '{}';
  }
  const report = JSON.parse(stdout) as { corruptions?: number; leaks?: number; 'compressed-clusters'?: number; 'allocated-clusters'?: number };
  return {
    code,
    corruptions: report.corruptions ?? 0,
    leaks: report.leaks ?? 0,
    compressedClusters: report['compressed-clusters'] ?? 0,
    allocatedClusters: report['allocated-clusters'] ?? 0,
  };
}

/** The snapshot names `qemu-img snapshot -l` lists, in table order. */
export function qemuSnapshotNames(image: string): string[] {
  const info = JSON.parse(execFileSync('qemu-img', ['info', '-U', '--output=json', image], { encoding: 'utf8' })) as { snapshots?: { name: string }[] };
  return (info.snapshots ?? []).map((snapshot) => snapshot.name);
}

/** A digest of a state's guest bytes as qemu-img reads them (`convert -l snapshot.name=…`); null for the current state. */
export function stateDigest(image: string, snapshot: string | null, format: 'qcow2' | 'raw' = 'qcow2'): string {
  const raw = `${image}.state-${process.hrtime.bigint()}.raw`;
  const args = ['convert', '-U', '-f', format, '-O', 'raw', ...(snapshot === null ? [] : ['-l', `snapshot.name=${snapshot}`]), image, raw];
  execFileSync('qemu-img', args);
  try {
    return fileDigest(raw);
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/** Every state of the disk (each snapshot and the current one) by name, as digests. */
export function allStateDigests(image: string): Record<string, string> {
  const digests: Record<string, string> = { current: stateDigest(image, null) };
  for (const name of qemuSnapshotNames(image)) digests[name] = stateDigest(image, name);
  return digests;
}

export function fileDigest(file: string): string {
  const hash = createHash('sha256');
  const descriptor = fs.openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(4 * MiB);
    for (;;) {
      const read = fs.readSync(descriptor, buffer, 0, buffer.length, null);
      if (read === 0) break;
      hash.update(buffer.subarray(0, read));
    }
  } finally {
    fs.closeSync(descriptor);
  }
  return hash.digest('hex');
}

/** Hidden temporary files (`.NAME.cowbell-….tmp`) a write left in the folder. */
export function temporaryFilesIn(folder: string): string[] {
  return fs.readdirSync(folder).filter((name) => /^\..*\.cowbell-[0-9a-f]{12}\.tmp$/.test(name));
}

/** CPU seconds one thread of a process spent while something ran, with its name (Linux's comm, 15 bytes at most). */
export interface ThreadCpu {
  name: string;
  seconds: number;
}

/** CPU time each thread of a process spent while something ran (Linux /proc). */
export interface ThreadCpuSampler {
  /** Stops sampling; each thread's CPU time since sampling began, busiest first (threads that ended meanwhile included up to their last sample). */
  stop(): ThreadCpu[];
}

export function sampleThreadCpu(pid: number, intervalMs = 40): ThreadCpuSampler {
  const ticksPerSecond = 100;
  const first = new Map<string, number>();
  const last = new Map<string, number>();
  const names = new Map<string, string>();
  const sample = (): void => {
    let threads: string[];
    try {
      threads = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const thread of threads) {
      try {
        const stat = fs.readFileSync(`/proc/${pid}/task/${thread}/stat`, 'utf8');
        // The name is between the first '(' and the last ')' (it may hold spaces and parentheses).
        // Fields after it: state is the 3rd field, utime the 14th, stime the 15th.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        const ticks = Number(fields[11]) + Number(fields[12]);
        if (!first.has(thread)) first.set(thread, ticks);
        last.set(thread, ticks);
        names.set(thread, stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')));
      } catch {
        // The thread ended between the listing and the read.
      }
    }
  };
  sample();
  const timer = setInterval(sample, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return [...last.entries()]
        .map(([thread, ticks]) => ({ name: names.get(thread) ?? '', seconds: (ticks - (first.get(thread) ?? ticks)) / ticksPerSecond }))
        .sort((a, b) => b.seconds - a.seconds);
    },
  };
}

/**
 * Whether the compress helper threads (named cb-compress) carried a real share of a job sampled by
 * sampleThreadCpu: together at least a tenth of the busiest other thread's CPU, which compresses
 * too and also reads, writes, checks and verifies. Without helpers no such thread exists; a helper
 * that got no work waits in Atomics.wait, spending nothing. The share varies with the machine's
 * load (they race for each batch's clusters), hence only a tenth: a compress job measured 0.27
 * alone and 0.24 during a full test run.
 */
export function compressHelpersShare(threads: readonly ThreadCpu[]): { helperSeconds: number; busiestOtherSeconds: number; share: number; summary: string } {
  const helperSeconds = threads.filter((thread) => thread.name === HELPER_THREAD_NAMES.compress).reduce((sum, thread) => sum + thread.seconds, 0);
  const busiestOtherSeconds = threads.find((thread) => thread.name !== HELPER_THREAD_NAMES.compress)?.seconds ?? 0;
  const summary = threads.slice(0, 6).map((thread) => `${thread.name} ${thread.seconds}`).join(', ');
  return { helperSeconds, busiestOtherSeconds, share: busiestOtherSeconds === 0 ? 0 : helperSeconds / busiestOtherSeconds, summary };
}
