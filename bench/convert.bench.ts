/**
 * Import (raw → qcow2) and export (qcow2 → raw) of a 1 GiB mixed disk, and `convert -c`, each
 * beside `qemu-img convert` doing the same work in the same run. Each pair runs ROUNDS times,
 * alternating (and who goes first alternates too), with dirty data flushed before every run; the
 * medians give the ratio, and the fastest rounds the best ratio beside it.
 * Targets (issue 3): ratio ≤ 1.2 for import and export, Cowbell's peak memory ≤ 200 MiB, each
 * measured with both programs in the same cache mode (flushed, and not flushed).
 * Cowbell runs as a user runs it, bin/cowbell, with Node's compile cache warmed (see lib.ts measureCowbell).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ConvertRequest } from '../src/shared/qcow2/convert/convert.ts';
import type { ConvertReply } from './convert-worker.ts';
import { compareRuns, cowbellCli, measureCowbell, measureQemuImg, type CowbellRun } from './lib.ts';
import { writeMixedImage } from './mixed-image.ts';

const GiB = 1024 * 1024 * 1024;
const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'cowbell-bench-'));

/** The engine loaded once in a worker thread, as in the app: each convert timed inside it. */
class WarmEngine {
  private readonly worker = new Worker(new URL('./convert-worker.ts', import.meta.url));

  convert(request: ConvertRequest): Promise<number> {
    return new Promise((resolve, reject) => {
      this.worker.once('message', (reply: ConvertReply) => (reply.error === undefined ? resolve(reply.seconds) : reject(new Error(reply.error))));
      this.worker.postMessage(request);
    });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}

/** The engine warm in a worker (no process start-up): what the app's jobs take. Its memory cannot be told apart from the bench's own. */
const warmEngine =
  (engine: WarmEngine, request: (output: string) => ConvertRequest): CowbellRun =>
  async (output) => ({ seconds: await engine.convert(request(output)), peakMiB: Number.NaN });

const compare = (name: string, note: string, runCowbell: CowbellRun, qemuArgs: (output: string) => string[], extension: string): Promise<void> =>
  compareRuns({ folder, name, note, runCowbell, qemuArgs, extension });

try {
  const raw = path.join(folder, 'mixed.raw');
  const qcow2 = path.join(folder, 'mixed.qcow2');
  process.stderr.write(`making a 1 GiB mixed raw disk in ${folder}\n`);
  writeMixedImage(raw, GiB);
  measureQemuImg(['convert', '-f', 'raw', '-O', 'qcow2', raw, qcow2]);
  // Untimed: warms Node's compile cache for the Cowbell runs.
  const small = path.join(folder, 'small.raw');
  writeMixedImage(small, 4 * 1024 * 1024);
  measureCowbell(['convert', '-f', 'raw', '-O', 'qcow2', small, path.join(folder, 'small.qcow2')]);

  const importArgs = (output: string): string[] => ['convert', '-f', 'raw', '-O', 'qcow2', raw, output];
  const exportArgs = (output: string): string[] => ['convert', '-f', 'qcow2', '-O', 'raw', qcow2, output];
  const withCache = (mode: string, args: string[]): string[] => ['convert', '-t', mode, ...args.slice(1)];
  // The same work means the same cache mode: whether the output is flushed to disk at the end.
  // qemu-img convert's default (unsafe) never flushes it; Cowbell's default (writeback) does,
  // before renaming it into place. Both programs take -t for either.
  const flushed = 'target ≤ 1.2, ≤ 200 MiB; both -t writeback (flushed)';
  await compare('import raw→qcow2 1 GiB, flushed', flushed, cowbellCli(importArgs), (output) => withCache('writeback', importArgs(output)), 'qcow2');
  await compare('export qcow2→raw 1 GiB, flushed', flushed, cowbellCli(exportArgs), (output) => withCache('writeback', exportArgs(output)), 'raw');
  const unflushed = 'target ≤ 1.2, ≤ 200 MiB; both -t unsafe (not flushed)';
  await compare('import raw→qcow2 1 GiB, unflushed', unflushed, cowbellCli((output) => withCache('unsafe', importArgs(output))), importArgs, 'qcow2');
  await compare('export qcow2→raw 1 GiB, unflushed', unflushed, cowbellCli((output) => withCache('unsafe', exportArgs(output))), exportArgs, 'raw');
  // A sparse raw disk: the 1 GiB of data, then 15 GiB of holes, which neither program should read.
  const sparse = path.join(folder, 'sparse.raw');
  fs.copyFileSync(raw, sparse);
  fs.truncateSync(sparse, 16 * GiB);
  const sparseImportArgs = (output: string): string[] => ['convert', '-f', 'raw', '-O', 'qcow2', sparse, output];
  await compare('import sparse raw 16 GiB (1 GiB data), unflushed', 'informational: holes are not read', cowbellCli((output) => withCache('unsafe', sparseImportArgs(output))), sparseImportArgs, 'qcow2');
  const engine = new WarmEngine();
  try {
    const warm = 'informational: the engine already loaded in a worker thread, as the app runs it';
    await compare('import, unflushed, warm engine', warm, warmEngine(engine, (output) => ({ source: raw, sourceFormat: 'raw', target: output, targetFormat: 'qcow2', durable: false })), importArgs, 'qcow2');
    await compare('export, unflushed, warm engine', warm, warmEngine(engine, (output) => ({ source: qcow2, sourceFormat: 'qcow2', target: output, targetFormat: 'raw', durable: false })), exportArgs, 'raw');
  } finally {
    await engine.stop();
  }
  const defaults = 'informational: each default; Cowbell flushes, qemu-img does not';
  await compare('import, each default', defaults, cowbellCli(importArgs), importArgs, 'qcow2');
  await compare('export, each default', defaults, cowbellCli(exportArgs), exportArgs, 'raw');
  await compare('convert -c 1 GiB (qemu-img -W)', 'informational; qemu-img compresses on all cores', cowbellCli((output) => ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, output]), (output) => ['convert', '-c', '-W', '-f', 'raw', '-O', 'qcow2', raw, output], 'qcow2');
} finally {
  fs.rmSync(folder, { recursive: true, force: true });
}
