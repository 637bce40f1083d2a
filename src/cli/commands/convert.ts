import * as fs from 'node:fs';
import * as os from 'node:os';
import { convertImageYielding, type ConvertRequest, type ConvertResult } from '../../shared/qcow2/convert/convert.ts';
import type { CreateOptions } from '../../shared/qcow2/image/create.ts';
import { findSnapshot, Qcow2Image, resolveBackingPath, type SnapshotRef } from '../../shared/qcow2/image/image.ts';
import { requiredBackingFormat } from '../backing-format.ts';
import { snapshotVmStateSize } from '../../shared/qcow2/format/snapshot-table.ts';
import { formatBytes } from '../../shared/format-units.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { sameFile } from '../../shared/qcow2/io/file-identity.ts';
import { detectFormat } from '../../shared/qcow2/image/image-format.ts';
import { readImageInfo } from '../../shared/qcow2/image/info.ts';
import type { RewriteRequest } from '../../shared/qcow2/rewrite/rewrite.ts';
import { isImageFormat, type ImageFormat } from '../../shared/qcow2/image/image-format-name.ts';
import { flag, option } from '../args.ts';
import { runCancellably, withProgressLine } from '../cancellable-job.ts';
import { EXIT_OK, EXIT_PARTIAL, UsageError, type Command } from '../command.ts';
import { describeRescue, rescueReportJson } from '../rescue-report.ts';
import { CREATE_OPTION_NAMES, createOptionsFromArgs, optionsHelp } from '../image-options.ts';
import { cacheMode } from '../cache-mode.ts';
import { MAX_COMPRESSION_THREADS, runRewrite } from '../rewrite-command.ts';
import { cliRuntime } from '../runtime.ts';
import { encryptionOf, PASSPHRASE_OPTIONS, withUnlock } from '../passphrase-input.ts';
import { snapshotRefOf } from '../snapshot-ref.ts';

/**
 * `cowbell convert`: copy a disk into a new raw or qcow2 image. The output format defaults to raw,
 * as in qemu-img. Unlike qemu-img, an existing output is refused unless --force is given; the
 * output appears under its name only once complete. Unlike qemu-img, a qcow2 output keeps the
 * source's internal snapshots (the rewrite engine) unless --no-snapshots; `-l NAME` copies one
 * snapshot's state instead of the current one. With -c, clusters are compressed on up to
 * MAX_COMPRESSION_THREADS cores. The output is flushed to disk before it takes its name unless
 * -t unsafe (qemu-img's default) says not to. With --rescue, a damaged source is copied as far
 * as it can be read (zeros elsewhere) and the unreadable ranges are listed; exit code 3 says some were.
 */

export const convert: Command = {
  name: 'convert',
  summary: 'copy a disk into a new raw or qcow2 image, optionally compressed (qemu-img convert)',
  usage: '[-c] [-p] [-q] [-U] [-f FMT] [-O raw|qcow2] [-o name=value,…] [-B BACKING -F FMT] [-t CACHE] [-l SNAPSHOT | --no-snapshots] [--rescue|--salvage [--json]] [-W] [-m N] [--passphrase-file FILE] [--force] INPUT OUTPUT',
  help: [
    '  --rescue   copy a damaged disk as far as it can be read: ranges whose tables or data are broken',
    '             become zeros, and a table lists them (guest offset, length, reason) with a total;',
    '             --json prints that report as JSON. Only the current state (or -l SNAPSHOT\'s) is copied.',
    '  --salvage  the same as --rescue (qemu-img convert\'s name for it).',
    '  -W, -m N   taken for qemu-img\'s scripts (out-of-order writes, parallel requests); Cowbell orders',
    '             its own reads and writes (and compresses on every core), so they change nothing.',
    'Exit codes: 0 copied, 1 failed (no output), 2 usage error, 3 (--rescue) copied with unreadable ranges.',
    '',
  ].join('\n'),
  options: {
    compress: { type: 'boolean', short: 'c' },
    progress: { type: 'boolean', short: 'p' },
    quiet: { type: 'boolean', short: 'q' },
    format: { type: 'string', short: 'f' },
    'output-format': { type: 'string', short: 'O' },
    options: { type: 'string', short: 'o', multiple: true },
    backing: { type: 'string', short: 'B' },
    'backing-format': { type: 'string', short: 'F' },
    cache: { type: 'string', short: 't' },
    // The source's cache mode (qemu-img's -T), taken for its scripts: Cowbell reads through the page cache.
    'source-cache': { type: 'string', short: 'T' },
    'force-share': { type: 'boolean', short: 'U' },
    snapshot: { type: 'string', short: 'l' },
    'no-snapshots': { type: 'boolean' },
    rescue: { type: 'boolean' },
    salvage: { type: 'boolean' },
    'out-of-order': { type: 'boolean', short: 'W' },
    coroutines: { type: 'string', short: 'm' },
    json: { type: 'boolean' },
    force: { type: 'boolean' },
    ...PASSPHRASE_OPTIONS,
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 2, max: 2 },
  optionsHelp: optionsHelp(CREATE_OPTION_NAMES.filter((name) => name !== 'size' && name !== 'preallocation')),
  async run(args, io) {
    const [source = '', target = ''] = args.positionals;
    if (flag(args, 'salvage')) args.values.rescue = true;
    const coroutines = option(args, 'coroutines');
    // qemu-img's bounds: a script's -m 8 is taken, a typo is not.
    if (coroutines !== undefined && !/^(?:[1-9]|1[0-6])$/.test(coroutines)) throw new UsageError(`convert: -m takes a number of parallel requests from 1 to 16, not ${coroutines}`);
    const sourceFormat = formatOption(option(args, 'format'), '-f');
    const targetFormat = formatOption(option(args, 'output-format'), '-O') ?? 'raw';
    const rawOptions = args.values.options;
    const options = createOptionsFromArgs(Array.isArray(rawOptions) ? rawOptions.filter((value): value is string => typeof value === 'string') : []);
    if (options.size !== undefined) throw new UsageError('convert: the output takes the input\'s size; -o size is not accepted');
    const backing = option(args, 'backing');
    if (backing !== undefined) options.backingFile = backing;
    const backingFormat = formatOption(option(args, 'backing-format'), '-F');
    if (backingFormat !== undefined) options.backingFormat = backingFormat;
    if (options.backingFile !== undefined) options.backingFormat = requiredBackingFormat('convert', options.backingFormat, resolveBackingPath(target, options.backingFile));
    const compress = flag(args, 'compress');
    if (targetFormat === 'raw' && (compress || Object.keys(options).length > 0)) {
      throw new UsageError('convert: -c, -o and -B need a qcow2 output (-O qcow2)');
    }
    const durable = cacheMode(option(args, 'cache'));
    cacheMode(option(args, 'source-cache'));
    const force = flag(args, 'force');
    if (!force && fs.existsSync(target)) throw new UsageError(`convert: ${target} already exists; pass --force to replace it`);
    // Kept snapshots go through the rewrite, for which OUTPUT naming the input means in place: not a convert's meaning.
    if (fs.existsSync(target) && sameFile(source, target)) throw new Qcow2Error('INVALID_ARGUMENT', `convert: the output ${target} is the disk being converted; write the copy to another file`);
    const showProgress = flag(args, 'progress') && !flag(args, 'quiet');
    if (option(args, 'snapshot') !== undefined && flag(args, 'no-snapshots')) throw new UsageError('convert: -l copies one snapshot; --no-snapshots does not apply');
    const sourceSnapshot = snapshotOption(option(args, 'snapshot'), source);
    const snapshots = sourceSnapshot === undefined ? snapshotCount(source, sourceFormat) : 0;
    const rescue = flag(args, 'rescue');
    if (flag(args, 'json') && !rescue) throw new UsageError('convert: --json prints the --rescue report; add --rescue');
    const compressionThreads = compress ? Math.min(os.availableParallelism(), MAX_COMPRESSION_THREADS) : 1;
    // Like qemu-img convert, the output is not encrypted (`cowbell encrypt` encrypts it afterwards).
    const encrypted = sourceFormat !== 'raw' && encryptionOf(source) !== null;
    // A rescue copies one state: a rewrite keeping the snapshots would stop at the first broken table.
    if (snapshots > 0 && targetFormat === 'qcow2' && !flag(args, 'no-snapshots') && !rescue) {
      const kept = assertSnapshotsCanBeKept(source, options);
      // Like qemu-img convert, nothing on stdout: the output file is the answer.
      // Like qemu-img convert (without --bitmaps), the copy leaves the dirty bitmaps behind: they stay valid on the source.
      const code = await runRewrite(args, io, { compression: compress ? 'compress' : 'uncompress', ...kept, durable, encryption: { kind: 'none' }, dropBitmaps: true }, { printSummary: false });
      if (encrypted && !flag(args, 'quiet')) io.err(unencryptedNote(source, target, targetFormat));
      // A script written for qemu-img expects an export without the old states: say that they came along.
      if (code === EXIT_OK && !flag(args, 'quiet')) {
        io.err(`cowbell: note: ${target} keeps the ${snapshots} internal snapshot${snapshots === 1 ? '' : 's'} of ${source} (qemu-img convert drops them; --no-snapshots leaves them behind)\n`);
      }
      return code;
    }
    const result = await withUnlock(args, io, source, (unlock) =>
      withProgressLine(io, showProgress, (onProgress) =>
        convertCancellably(
          { source, target, sourceFormat, sourceSnapshot, targetFormat, options, compress, compressionThreads, compressWorker: cliRuntime.compressWorker, overwrite: force, durable, forceShare: flag(args, 'force-share'), rescue, ...unlock },
          onProgress,
        ),
      ),
    );
    if (encrypted && !flag(args, 'quiet')) io.err(unencryptedNote(source, target, targetFormat));
    // Once the copy is made: a failure is one line, and the note is about a copy that exists.
    const vmState = sourceSnapshot === undefined || flag(args, 'quiet') ? 0 : savedVmStateBytes(source, sourceSnapshot);
    if (vmState > 0) io.err(`cowbell: note: the snapshot's saved VM state (its RAM, ${formatBytes(vmState)}) is not disk data: ${target} holds the snapshot's disk only, and a VM started on it boots afresh\n`);
    if (snapshots > 0 && targetFormat === 'raw' && !flag(args, 'quiet') && !flag(args, 'no-snapshots')) {
      io.err(`cowbell: note: a raw disk holds no snapshots; only the current state of ${source} was copied (${snapshots} snapshot${snapshots === 1 ? '' : 's'} left behind)\n`);
    } else if (snapshots > 0 && rescue && !flag(args, 'quiet') && !flag(args, 'no-snapshots')) {
      io.err(`cowbell: note: a rescue copies one state; only the current state of ${source} was copied (-l NAME copies a snapshot's)\n`);
    }
    if (!rescue) return EXIT_OK;
    if (flag(args, 'json')) io.out(`${JSON.stringify(rescueReportJson(result), null, 4)}\n`);
    else if (!flag(args, 'quiet')) io.out(describeRescue(result, target));
    return (result.unreadable ?? []).length > 0 ? EXIT_PARTIAL : EXIT_OK;
  },
};

/**
 * Converts on this thread, letting the event loop turn between chunks so that Ctrl-C (SIGINT)
 * reaches its handler: the convert then stops at the next chunk and removes its temporary file,
 * leaving no output. (A worker thread would do the same at the cost of starting one: tens of
 * milliseconds, a sizeable part of a short convert.)
 */
async function convertCancellably(request: ConvertRequest, onProgress: (stage: string, done: number, total: number) => void): Promise<ConvertResult> {
  try {
    return await runCancellably((job) => convertImageYielding(request, job), onProgress, 'Cancelled; no output was written');
  } catch (error) {
    // A damaged source: say what can still be done about it (not for the output's own failure, which names it).
    const outputFault = error instanceof Error && error.message.startsWith(`${request.target}: `);
    if (request.rescue !== true && !outputFault && error instanceof Qcow2Error && (error.code === 'CORRUPT' || error.code === 'IO_ERROR')) {
      throw new Qcow2Error(error.code, `${error.message} (convert --rescue copies what can be read)`, { cause: error });
    }
    throw error;
  }
}

function unencryptedNote(source: string, target: string, targetFormat: ImageFormat): string {
  const remedy = targetFormat === 'raw' ? 'a raw disk cannot be encrypted' : `\`cowbell encrypt ${target}\` encrypts it`;
  return `cowbell: note: ${source} is encrypted but ${target} is not (as with qemu-img convert); ${remedy}\n`;
}

/**
 * qemu-img's -l: `ID_OR_NAME` (an id first, then a name, as qemu-img), or `snapshot.name=NAME` or
 * `snapshot.id=ID`, each looked up as that alone: the snapshot meant, by its id and name.
 */
function snapshotOption(value: string | undefined, source: string): SnapshotRef | undefined {
  if (value === undefined) return undefined;
  if (value === '') throw new UsageError('convert: -l needs a snapshot name');
  const ref = snapshotRefOf(value);
  const snapshots = readImageInfo(source).snapshots ?? [];
  // A bare NAME is an id first, then a name, as qemu-img convert -l takes it (bdrv_snapshot_load_tmp_by_id_or_name).
  const found =
    typeof ref === 'string'
      ? (snapshots.find((snapshot) => snapshot.id === ref) ?? snapshots.find((snapshot) => snapshot.name === ref))
      : snapshots.find((snapshot) => (ref.id === undefined ? snapshot.name === ref.name : snapshot.id === ref.id));
  if (found === undefined) {
    throw new Qcow2Error('SNAPSHOT_NOT_FOUND', typeof ref === 'string' ? `There is no snapshot with id or name "${ref}"` : ref.id === undefined ? `There is no snapshot with name "${ref.name}"` : `There is no snapshot with id "${ref.id}"`);
  }
  // A name several snapshots share is refused by the copy; an id names one. Found by its name, it is
  // named so (an id another snapshot shares would be refused).
  const byName = typeof ref === 'string' ? found.id !== ref : ref.id === undefined;
  return byName ? { name: found.name } : { id: found.id, name: found.name };
}

/** What makes a source unreadable as an image (the copy reports it), as against a failure to read it. */
const FORMAT_FAULTS = new Set<string>(['BAD_MAGIC', 'CORRUPT', 'TRUNCATED', 'UNSUPPORTED_FEATURE', 'UNSUPPORTED_VERSION', 'NOT_A_FILE', 'NOT_FOUND']);

/** How many internal snapshots the source holds (0 for a raw source, or one that is not what -f says: convert reports that). */
/** The VM state (savevm's RAM and devices) a snapshot keeps beside its disk, or 0 where it cannot be told. */
function savedVmStateBytes(source: string, snapshot: SnapshotRef): number {
  try {
    const image = Qcow2Image.open(source, { readOnly: true, openBacking: false });
    try {
      return snapshotVmStateSize(findSnapshot(image, snapshot));
    } finally {
      image.close();
    }
  } catch {
    return 0;
  }
}

function snapshotCount(source: string, sourceFormat: ImageFormat | undefined): number {
  if (sourceFormat === 'raw') return 0;
  try {
    if (detectFormat(source) !== 'qcow2') return 0;
    return readImageInfo(source).snapshots?.length ?? 0;
  } catch (error) {
    // A source that cannot be read as an image: the copy says why, in its own words (naming the
    // file). But one that failed to read (an I/O error, a full table of descriptors…) may read the
    // next time: counting its snapshots as none would make a copy without them, and say nothing.
    if (!(error instanceof Qcow2Error) || !FORMAT_FAULTS.has(error.code)) throw error;
    return 0;
  }
}

/**
 * A copy that keeps the snapshots keeps the source's layout (each state's tables are copied as
 * they are): options that would change it, a backing file for the output, or flattening the
 * source's own backing file cannot be had together with the snapshots; compat 1.1 upgrades a 0.10
 * source (qemu-img amend's way), the way back is refused. Returns the compression type and version asked for.
 */
function assertSnapshotsCanBeKept(source: string, options: CreateOptions): Pick<RewriteRequest, 'compressionType' | 'version'> {
  const info = readImageInfo(source);
  const specific = info['format-specific'].data;
  const refuse = (why: string): never => {
    throw new UsageError(`convert: ${why} while keeping the ${info.snapshots?.length ?? 0} internal snapshots of ${source}; add --no-snapshots to copy the current state only, or -l NAME for one snapshot`);
  };
  if (options.backingFile !== undefined) refuse('-B (a backing file for the output) cannot be used');
  if (info['backing-filename'] !== undefined) refuse('its backing file cannot be flattened into the copy (use `cowbell compact SOURCE OUTPUT` to copy it with its snapshots, keeping the backing file)');
  if (options.clusterSize !== undefined && options.clusterSize !== info['cluster-size']) refuse('the cluster size cannot change');
  if (options.compat === '0.10' && specific.compat !== '0.10') refuse('compat cannot go back to 0.10');
  if (options.refcountBits !== undefined && options.refcountBits !== specific['refcount-bits']) refuse('refcount_bits cannot change');
  if (options.extendedL2 !== undefined && options.extendedL2 !== (specific['extended-l2'] ?? false)) refuse('extended_l2 cannot change');
  if (options.preallocation !== undefined && options.preallocation !== 'off') refuse('preallocation cannot be used');
  return {
    compressionType: options.compressionType === undefined ? undefined : options.compressionType === 'zstd' ? 1 : 0,
    version: options.compat === '1.1' ? 3 : undefined,
  };
}

function formatOption(value: string | undefined, flagName: string): ImageFormat | undefined {
  if (value === undefined) return undefined;
  if (!isImageFormat(value)) throw new UsageError(`convert: ${flagName} must be qcow2 or raw, not ${value}`);
  return value;
}
