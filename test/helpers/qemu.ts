/**
 * The real qemu tools (qemu-img, qemu-io 7.2) as the reference for engine tests: run them, read
 * their JSON, and get guest bytes out of an image the way QEMU sees them.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Exit codes that are answers, not failures (qemu-img check: 2 and 3; compare: 1). */
  okCodes?: number[];
  cwd?: string;
}

/** Runs any qemu tool; rejects unless it exits with one of okCodes (default 0). */
export function runTool(tool: string, args: string[], options: RunOptions = {}): Promise<ToolResult> {
  const okCodes = options.okCodes ?? [0];
  return new Promise((resolve, reject) => {
    execFile(tool, args, { cwd: options.cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (error, stdout, stderr) => {
      const rawCode = error === null ? 0 : (error as { code?: unknown }).code;
      const signal = error === null ? null : (error as { signal?: NodeJS.Signals | null }).signal;
      // A tool killed by a signal reports it the way a shell does: 128 + the signal's number.
      const code = typeof rawCode === 'number' ? rawCode : signal ? 128 + (os.constants.signals[signal] ?? 0) : -1;
      const result = { code, stdout, stderr };
      if (!okCodes.includes(code)) {
        reject(new Error(`${tool} ${args.join(' ')} exited with ${code}:\n${stderr}${stdout}`));
      } else resolve(result);
    });
  });
}

export function qemuImg(args: string[], options: RunOptions = {}): Promise<ToolResult> {
  return runTool('qemu-img', args, options);
}

/**
 * qemu-img 7.2 times PBKDF2 for a LUKS key slot with the thread's user CPU time, which these VMs
 * account coarsely: a create or amend fails now and then with this message (a quarter of the time
 * with both cores busy, as when test files run side by side). Only that failure is tried again.
 */
const PBKDF2_TIMING_FAILURE = /Unable to get accurate CPU usage/;
const PBKDF2_TIMING_ATTEMPTS = 24;

/** Runs a qemu-img command that times PBKDF2 (create/amend/convert to LUKS), again while it fails only for that reason. */
export async function qemuImgTimingPbkdf2(args: string[]): Promise<ToolResult> {
  for (let attempt = 1; ; attempt++) {
    const result = await runTool('qemu-img', args, { okCodes: [0, 1] });
    if (result.code === 0) return result;
    if (attempt >= PBKDF2_TIMING_ATTEMPTS || !PBKDF2_TIMING_FAILURE.test(result.stderr)) {
      throw new Error(`qemu-img ${args.join(' ')} exited with ${result.code} (attempt ${attempt}):\n${result.stderr}`);
    }
  }
}

/** qemuImgTimingPbkdf2 for callers that cannot wait on a promise (the e2e disk builders). */
export function qemuImgTimingPbkdf2Sync(args: string[]): string {
  for (let attempt = 1; ; attempt++) {
    const result = spawnSync('qemu-img', args, { encoding: 'utf8' });
    if (result.status === 0) return result.stdout;
    if (attempt >= PBKDF2_TIMING_ATTEMPTS || !PBKDF2_TIMING_FAILURE.test(result.stderr)) {
      throw new Error(`qemu-img ${args.join(' ')} exited with ${String(result.status ?? result.signal)} (attempt ${attempt}):\n${result.stderr}`);
    }
  }
}

export interface QemuIoOptions {
  /** The image's format; qcow2 unless told. */
  format?: 'qcow2' | 'raw';
  cwd?: string;
}

/**
 * Runs qemu-io commands (one `-c` each) on an image. qemu-io 7.2 exits 0 after some failed
 * commands (and has no -q), so its output is checked for failures too.
 */
export async function qemuIo(image: string, commands: string[], options: QemuIoOptions = {}): Promise<string> {
  const args = ['-f', options.format ?? 'qcow2'];
  for (const command of commands) args.push('-c', command);
  args.push(image);
  const result = await runTool('qemu-io', args, { cwd: options.cwd });
  const output = result.stdout + result.stderr;
  if (/error|failed|not found/i.test(output)) throw new Error(`qemu-io ${args.join(' ')} reported a failure:\n${output}`);
  return result.stdout;
}

export interface TempDir {
  path: string;
  /** A path inside the folder. */
  file(name: string): string;
  cleanup(): void;
}

export function tempDir(): TempDir {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-'));
  return {
    path: folder,
    file: (name) => path.join(folder, name),
    cleanup: () => fs.rmSync(folder, { recursive: true, force: true }),
  };
}

/** `qemu-img check --output=json`, as qemu-img reports it. */
export interface QemuCheckReport {
  filename: string;
  format: string;
  'check-errors': number;
  'image-end-offset'?: number;
  corruptions?: number;
  leaks?: number;
  'allocated-clusters'?: number;
  'total-clusters'?: number;
  'compressed-clusters'?: number;
  'fragmented-clusters'?: number;
}

export interface QemuCheck {
  /** 0 clean, 1 could not check, 2 corruptions, 3 leaks only. */
  code: number;
  report: QemuCheckReport | null;
  output: string;
}

export async function qemuCheck(image: string): Promise<QemuCheck> {
  const result = await qemuImg(['check', '-f', 'qcow2', '--output=json', image], { okCodes: [0, 1, 2, 3] });
  let report: QemuCheckReport | null;
  try {
    report = JSON.parse(result.stdout) as QemuCheckReport;
  } catch {
    // Exit code 1 (could not check) may come with no JSON at all.
    report = null;
  }
  return { code: result.code, report, output: result.stdout + result.stderr };
}

export interface RawOfOptions {
  format?: 'qcow2' | 'raw';
  /** Read an internal snapshot (`-l snapshot.name=…`) instead of the active state. */
  snapshot?: string;
}

/** The guest bytes as qemu-img sees them (`convert -O raw`); meant for images of at most 64 MiB. */
export async function rawOf(image: string, options: RawOfOptions = {}): Promise<Uint8Array> {
  const folder = tempDir();
  try {
    const output = folder.file('raw');
    const args = ['convert', '-f', options.format ?? 'qcow2', '-O', 'raw'];
    if (options.snapshot !== undefined) args.push('-l', `snapshot.name=${options.snapshot}`);
    args.push(image, output);
    await qemuImg(args);
    return new Uint8Array(fs.readFileSync(output));
  } finally {
    folder.cleanup();
  }
}

export interface CompareOptions {
  formatA?: 'qcow2' | 'raw';
  formatB?: 'qcow2' | 'raw';
}

/** `qemu-img compare`: code 0 identical, 1 different (with qemu-img's words in output). */
export async function qemuCompare(a: string, b: string, options: CompareOptions = {}): Promise<{ code: number; output: string }> {
  const result = await qemuImg(['compare', '-f', options.formatA ?? 'qcow2', '-F', options.formatB ?? 'raw', a, b], { okCodes: [0, 1] });
  return { code: result.code, output: result.stdout + result.stderr };
}

/** `qemu-img info --output=json`, the keys the tests look at. */
export interface QemuInfo {
  'virtual-size': number;
  'cluster-size'?: number;
  format: string;
  'backing-filename'?: string;
  'backing-filename-format'?: string;
  'dirty-flag'?: boolean;
  snapshots?: { id: string; name: string; 'vm-state-size': number; 'date-sec': number; 'date-nsec': number; 'vm-clock-sec': number; 'vm-clock-nsec': number; icount?: number }[];
  'format-specific'?: {
    type: string;
    data: { compat?: string; 'compression-type'?: string; 'refcount-bits'?: number; 'extended-l2'?: boolean; 'lazy-refcounts'?: boolean; corrupt?: boolean };
  };
}

export async function qemuInfo(image: string, options: { format?: 'qcow2' | 'raw' } = {}): Promise<QemuInfo> {
  const result = await qemuImg(['info', '-f', options.format ?? 'qcow2', '--output=json', image]);
  return JSON.parse(result.stdout) as QemuInfo;
}

/** One run of `qemu-img map --output=json`. */
export interface QemuMapEntry {
  start: number;
  length: number;
  depth: number;
  present?: boolean;
  zero: boolean;
  data: boolean;
  compressed?: boolean;
  offset?: number;
}

export async function qemuMap(image: string): Promise<QemuMapEntry[]> {
  const result = await qemuImg(['map', '-f', 'qcow2', '--output=json', image]);
  return JSON.parse(result.stdout) as QemuMapEntry[];
}

/** Runs `jobs` with at most `limit` in flight (qemu processes are cheap, but the machine has 2 cores). */
export async function inBatches<T>(jobs: (() => Promise<T>)[], limit = 4): Promise<T[]> {
  const results: T[] = new Array<T>(jobs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < jobs.length) {
      const index = next++;
      const job = jobs[index];
      if (job) results[index] = await job();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, jobs.length) }, worker));
  return results;
}

/** The first byte where two buffers differ (or where one ends), or -1: a readable failure instead of a 30 MiB diff. */
export function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const length = Math.min(a.length, b.length);
  for (let index = 0; index < length; index++) if (a[index] !== b[index]) return index;
  return a.length === b.length ? -1 : length;
}
