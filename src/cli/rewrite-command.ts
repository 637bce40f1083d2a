/**
 * What `cowbell compress` and `cowbell compact` share: both rewrite an image with every snapshot
 * (the engine's rewrite/), in place or into OUTPUT, with progress, Ctrl-C and a one-line summary.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { compressedStates } from '../shared/compressed-states.ts';
import { formatBytes, sizeChange } from '../shared/format-units.ts';
import type { CompressedData } from '../shared/qcow2/model.ts';
import { Qcow2Error } from '../shared/qcow2/errors.ts';
import { sameFile } from '../shared/qcow2/io/file-identity.ts';
import { rewriteImageYielding, type RewriteRequest, type RewriteResult } from '../shared/qcow2/rewrite/rewrite.ts';
import { flag, option } from './args.ts';
import { runCancellably, withProgressLine } from './cancellable-job.ts';
import { cacheMode } from './cache-mode.ts';
import { EXIT_OK, UsageError, type CliIo, type ParsedArgs } from './command.ts';
import { cliRuntime } from './runtime.ts';
import { createOptionsFrom, parseOptionString } from './image-options.ts';
import { PASSPHRASE_OPTIONS, withUnlock } from './passphrase-input.ts';

/** Each compressing thread holds its own heap and zlib state: a few are enough. */
export const MAX_COMPRESSION_THREADS = 4;

export const REWRITE_OPTIONS = {
  progress: { type: 'boolean', short: 'p' },
  quiet: { type: 'boolean', short: 'q' },
  json: { type: 'boolean' },
  'no-verify': { type: 'boolean' },
  'drop-bitmaps': { type: 'boolean' },
  /** Replace an existing OUTPUT; and go on with a legacy AES passphrase that fails the plausibility check. */
  force: { type: 'boolean' },
  cache: { type: 'string', short: 't' },
  ...PASSPHRASE_OPTIONS,
  help: { type: 'boolean', short: 'h' },
} as const;

export interface RewriteReport {
  /** Print the one-line summary (convert keeps quiet: the output file is the answer). */
  printSummary?: boolean;
  /** The summary line; sizes before and after by default. */
  describe?: (result: RewriteResult) => string;
}

/**
 * compress, compact, decrypt and convert-keeping-snapshots: the rewrite, with the passphrase asked
 * only if the source turns out to need one (passphrase-input.ts withUnlock).
 */
export async function runRewrite(args: ParsedArgs, io: CliIo, request: Omit<RewriteRequest, 'source' | 'target'>, report: RewriteReport = {}): Promise<number> {
  const source = args.positionals[0] ?? '';
  const result = await withUnlock(args, io, source, (unlock) => executeRewrite(args, io, { ...request, passphrase: unlock.passphrase, trustLegacyPassphrase: unlock.trustLegacyPassphrase }));
  return reportRewrite(args, io, result, report);
}

/** One rewrite of IMAGE into OUTPUT (or in place), with -p's progress line and Ctrl-C. */
export async function executeRewrite(args: ParsedArgs, io: CliIo, request: Omit<RewriteRequest, 'source' | 'target'>): Promise<RewriteResult> {
  const [source = '', target] = args.positionals;
  if (target !== undefined && !flag(args, 'force') && fs.existsSync(target) && !sameFile(source, target)) {
    throw new UsageError(`${target} already exists; pass --force to replace it`);
  }
  const showProgress = flag(args, 'progress') && !flag(args, 'quiet');
  const full: RewriteRequest = {
    ...request,
    source,
    target,
    compressionThreads: request.compression === 'compress' ? Math.min(os.availableParallelism(), MAX_COMPRESSION_THREADS) : 1,
    compressWorker: cliRuntime.compressWorker,
    compressStartMs: cliRuntime.helperStartMs,
    earlyVerifyWorker: cliRuntime.earlyVerifyWorker,
    earlyVerifyStartMs: cliRuntime.helperStartMs,
    verify: !flag(args, 'no-verify'),
    dropBitmaps: request.dropBitmaps === true || flag(args, 'drop-bitmaps'),
    overwrite: flag(args, 'force'),
    durable: request.durable ?? cacheMode(option(args, 'cache')),
  };
  try {
    return await withProgressLine(io, showProgress, (onProgress) =>
      runCancellably((job) => rewriteImageYielding(full, job), overallProgress(onProgress), 'Cancelled; the disk was left as it was'),
    );
  } catch (error) {
    if (error instanceof Qcow2Error && error.code === 'HAS_BITMAPS') throw new Qcow2Error('HAS_BITMAPS', `${error.message}; pass --drop-bitmaps to leave them behind, and take a full backup next`);
    if (error instanceof Qcow2Error && error.code === 'NEEDS_VERSION_3') throw new Qcow2Error('NEEDS_VERSION_3', `${error.message}; add -o compat=1.1 to upgrade the disk as well (QEMU 1.1 and later read it)`);
    throw error;
  }
}

export function reportRewrite(args: ParsedArgs, io: CliIo, result: RewriteResult, { printSummary = true, describe = summary }: RewriteReport = {}): number {
  if (flag(args, 'json')) io.out(`${JSON.stringify(result, null, 4)}\n`);
  else if (printSummary && !flag(args, 'quiet')) {
    io.out(`${describe(result)}\n`);
    if (result.storedUncompressed !== null) io.out(`${describeStoredUncompressed(result.storedUncompressed, result.encryption === 'luks')}\n`);
  }
  return EXIT_OK;
}

/** What became of the source's compressed data: an encrypted disk cannot keep it compressed, and it grows. */
function describeStoredUncompressed(data: CompressedData, encrypted: boolean): string {
  const where = compressedStates(data);
  const why = encrypted ? ': QEMU cannot keep compressed data encrypted' : '';
  return `${formatBytes(data.storedBytes)} of compressed data${where === '' ? '' : ` (in ${where})`} is now stored uncompressed, up to ${formatBytes(data.guestBytes)}${why}`;
}

/** The share of the whole job each stage takes, so one progress line only ever moves forward. */
const STAGE_SPANS: Readonly<Record<string, [number, number]>> = {
  // Unlocking an encrypted source and making a new key: PBKDF2, seconds with no steps to show.
  'Trying key slots': [0, 0],
  'reading the mapping tables': [0, 0.02],
  'making the new key': [0.02, 0.02],
  copying: [0.02, 0.85],
  checking: [0.85, 0.88],
  verifying: [0.88, 1],
};

function overallProgress(print: (stage: string, done: number, total: number) => void): (stage: string, done: number, total: number) => void {
  const scale = 1_000_000;
  let span: [number, number] = [0, 1];
  let shown = 0;
  return (stage, done, total) => {
    // The check's own stages ('checking metadata', 'comparing refcounts', …) fall within 'checking'.
    span = STAGE_SPANS[stage] ?? span;
    const [from, to] = span;
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    shown = Math.max(shown, from + (to - from) * fraction);
    print(stage, Math.round(shown * scale), scale);
  };
}

/** `where: 10 MiB → 6 MiB (40% smaller), 2 snapshots kept, every state verified`. */
export function summary(result: RewriteResult): string {
  return `${rewriteTarget(result)}: ${formatBytes(result.beforeBytes)} → ${formatBytes(result.afterBytes)} (${sizeChange(result.beforeBytes, result.afterBytes)}), ${snapshotsKept(result)}`;
}

/** The output's name, saying when the original was left as it was. */
export function rewriteTarget(result: RewriteResult): string {
  return result.inPlace ? result.target : `${result.target} (the original is unchanged)`;
}

/** `2 snapshots kept, every state verified`. */
export function snapshotsKept(result: RewriteResult): string {
  const kept = result.snapshots === 1 ? '1 snapshot kept' : `${result.snapshots} snapshots kept`;
  return `${kept}${result.verified ? ', every state verified' : ''}${result.upgradedToVersion3 ? ', upgraded to compat 1.1 (qcow2 version 3)' : ''}`;
}

/** What `-o` can ask of a rewrite: its compression type, and compat 1.1 (a version 2 disk upgraded to version 3). */
export type RewriteImageOption = 'compat' | 'compression_type';

/** The `-o name=value,…` strings of compress, compact or convert, as the rewrite's options; `names` are those the command takes. */
export function rewriteImageOptions(values: string[], command: string, names: readonly RewriteImageOption[]): Pick<RewriteRequest, 'compressionType' | 'version'> {
  const result: Pick<RewriteRequest, 'compressionType' | 'version'> = {};
  for (const text of values) {
    for (const [name, value] of parseOptionString(text)) {
      if (!names.some((allowed) => allowed === name)) throw new UsageError(`${command}: -o takes only ${names.join(' and ')}, not ${name}`);
      const parsed = createOptionsFrom(new Map([[name, value]]));
      if (parsed.compat !== undefined) result.version = parsed.compat === '1.1' ? 3 : 2;
      if (parsed.compressionType !== undefined) result.compressionType = parsed.compressionType === 'zstd' ? 1 : 0;
    }
  }
  return result;
}
