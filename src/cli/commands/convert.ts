import * as fs from 'node:fs';
import { convertImage } from '../../shared/qcow2/convert.ts';
import { isImageFormat, type ImageFormat } from '../../shared/qcow2/image-format.ts';
import type { JobContext } from '../../shared/qcow2/job-context.ts';
import { flag, option } from '../args.ts';
import { EXIT_OK, UsageError, type CliIo, type Command } from '../command.ts';
import { createOptionsFromArgs } from '../image-options.ts';

/**
 * `cowbell convert`: copy a disk into a new raw or qcow2 image. The output format defaults to raw,
 * as in qemu-img. Unlike qemu-img, an existing output is refused unless --force is given; the
 * output appears under its name only once complete. Internal snapshots are not copied (as qemu-img).
 */
export const convert: Command = {
  name: 'convert',
  summary: 'copy a disk into a new raw or qcow2 image, optionally compressed (qemu-img convert)',
  usage: '[-c] [-p] [-q] [-f FMT] [-O raw|qcow2] [-o name=value,…] [-B BACKING [-F FMT]] [--force] INPUT OUTPUT',
  options: {
    compress: { type: 'boolean', short: 'c' },
    progress: { type: 'boolean', short: 'p' },
    quiet: { type: 'boolean', short: 'q' },
    format: { type: 'string', short: 'f' },
    'output-format': { type: 'string', short: 'O' },
    options: { type: 'string', short: 'o', multiple: true },
    backing: { type: 'string', short: 'B' },
    'backing-format': { type: 'string', short: 'F' },
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
    const force = flag(args, 'force');
    if (!force && fs.existsSync(target)) throw new UsageError(`convert: ${target} already exists; pass --force to replace it`);
    const job = flag(args, 'progress') && !flag(args, 'quiet') ? progressPrinter(io) : quietJob;
    convertImage({ source, target, sourceFormat, targetFormat, options, compress, overwrite: force }, job);
    if (job !== quietJob) io.err('\n');
    return EXIT_OK;
  },
};

function formatOption(value: string | undefined, flagName: string): ImageFormat | undefined {
  if (value === undefined) return undefined;
  if (!isImageFormat(value)) throw new UsageError(`convert: ${flagName} must be qcow2 or raw, not ${value}`);
  return value;
}

const quietJob: JobContext = { progress() {}, throwIfCancelled() {} };

/** qemu-img -p's progress line, rewritten in place on stderr at each hundredth of a percent. */
function progressPrinter(io: CliIo): JobContext {
  let shown = -1;
  return {
    progress(_stage, done, total) {
      const hundredths = total > 0 ? Math.floor((done / total) * 10000) : 10000;
      if (hundredths === shown) return;
      shown = hundredths;
      io.err(`    (${(hundredths / 100).toFixed(2)}/100%)\r`);
    },
    throwIfCancelled() {},
  };
}
