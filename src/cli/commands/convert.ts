import * as fs from 'node:fs';
import * as os from 'node:os';
import { convertImageYielding, type ConvertRequest } from '../../shared/qcow2/convert/convert.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { isImageFormat, type ImageFormat } from '../../shared/qcow2/image/image-format-name.ts';
import type { JobContext } from '../../shared/qcow2/job-context.ts';
import { flag, option } from '../args.ts';
import { EXIT_OK, UsageError, type CliIo, type Command } from '../command.ts';
import { createOptionsFromArgs } from '../image-options.ts';

/**
 * `cowbell convert`: copy a disk into a new raw or qcow2 image. The output format defaults to raw,
 * as in qemu-img. Unlike qemu-img, an existing output is refused unless --force is given; the
 * output appears under its name only once complete. Internal snapshots are not copied (as qemu-img).
 * With -c, clusters are compressed on up to MAX_COMPRESSION_THREADS cores. The output is flushed
 * to disk before it takes its name unless -t unsafe (qemu-img's default) says not to.
 */
/** Each compressing thread holds its own heap and zlib garbage (tens of MiB): a few are enough. */
const MAX_COMPRESSION_THREADS = 4;

export const convert: Command = {
  name: 'convert',
  summary: 'copy a disk into a new raw or qcow2 image, optionally compressed (qemu-img convert)',
  usage: '[-c] [-p] [-q] [-U] [-f FMT] [-O raw|qcow2] [-o name=value,…] [-B BACKING [-F FMT]] [-t CACHE] [--force] INPUT OUTPUT',
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
    'force-share': { type: 'boolean', short: 'U' },
    force: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 2, max: 2 },
  async run(args, io) {
    const [source = '', target = ''] = args.positionals;
    const sourceFormat = formatOption(option(args, 'format'), '-f');
    const targetFormat = formatOption(option(args, 'output-format'), '-O') ?? 'raw';
    const rawOptions = args.values.options;
    const options = createOptionsFromArgs(Array.isArray(rawOptions) ? rawOptions.filter((value): value is string => typeof value === 'string') : []);
    if (options.size !== undefined) throw new UsageError('convert: the output takes the input\'s size; -o size is not accepted');
    const backing = option(args, 'backing');
    if (backing !== undefined) options.backingFile = backing;
    const backingFormat = formatOption(option(args, 'backing-format'), '-F');
    if (backingFormat !== undefined) options.backingFormat = backingFormat;
    const compress = flag(args, 'compress');
    if (targetFormat === 'raw' && (compress || Object.keys(options).length > 0)) {
      throw new UsageError('convert: -c, -o and -B need a qcow2 output (-O qcow2)');
    }
    const durable = cacheMode(option(args, 'cache'));
    const force = flag(args, 'force');
    if (!force && fs.existsSync(target)) throw new UsageError(`convert: ${target} already exists; pass --force to replace it`);
    const showProgress = flag(args, 'progress') && !flag(args, 'quiet');
    try {
      const compressionThreads = compress ? Math.min(os.availableParallelism(), MAX_COMPRESSION_THREADS) : 1;
      await convertCancellably({ source, target, sourceFormat, targetFormat, options, compress, compressionThreads, overwrite: force, durable, forceShare: flag(args, 'force-share') }, showProgress ? progressPrinter(io) : () => {});
    } finally {
      if (showProgress) io.err('\n');
    }
    return EXIT_OK;
  },
};

/**
 * Converts on this thread, letting the event loop turn between chunks so that Ctrl-C (SIGINT)
 * reaches its handler: the convert then stops at the next chunk and removes its temporary file,
 * leaving no output. (A worker thread would do the same at the cost of starting one: tens of
 * milliseconds, a sizeable part of a short convert.)
 */
async function convertCancellably(request: ConvertRequest, onProgress: (done: number, total: number) => void): Promise<void> {
  let cancelled = false;
  const cancel = (): void => {
    cancelled = true;
  };
  const job: JobContext = {
    progress: (_stage, done, total) => onProgress(done, total),
    throwIfCancelled() {
      if (cancelled) throw new Qcow2Error('CANCELLED', 'Cancelled; no output was written');
    },
  };
  process.on('SIGINT', cancel);
  try {
    await convertImageYielding(request, job);
  } finally {
    process.off('SIGINT', cancel);
  }
}

/**
 * qemu-img's -t: the output's cache mode. Cowbell's default is writeback, qemu-img convert's is
 * unsafe. Every mode but unsafe flushes the output to disk before it takes its name; unsafe skips
 * that flush (a power failure may then leave an incomplete output; an existing file being replaced
 * is flushed whatever the mode).
 */
const CACHE_MODES = ['writeback', 'unsafe', 'none', 'writethrough', 'directsync'];

function cacheMode(value: string | undefined): boolean {
  if (value === undefined) return true;
  if (!CACHE_MODES.includes(value)) throw new UsageError(`convert: -t must be one of ${CACHE_MODES.join(', ')}, not ${value}`);
  return value !== 'unsafe';
}

function formatOption(value: string | undefined, flagName: string): ImageFormat | undefined {
  if (value === undefined) return undefined;
  if (!isImageFormat(value)) throw new UsageError(`convert: ${flagName} must be qcow2 or raw, not ${value}`);
  return value;
}

/** qemu-img -p's progress line, rewritten in place on stderr at each hundredth of a percent. */
function progressPrinter(io: CliIo): (done: number, total: number) => void {
  let shown = -1;
  return (done, total) => {
    const hundredths = total > 0 ? Math.floor((done / total) * 10000) : 10000;
    if (hundredths === shown) return;
    shown = hundredths;
    io.err(`    (${(hundredths / 100).toFixed(2)}/100%)\r`);
  };
}
