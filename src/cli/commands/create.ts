import * as fs from 'node:fs';
import { createImage, type CreateOptions } from '../../shared/qcow2/image/create.ts';
import { isImageFormat } from '../../shared/qcow2/image/image-format.ts';
import { requiredBackingFormat } from '../backing-format.ts';
import { resolveBackingPath } from '../../shared/qcow2/image/image.ts';
import { readImageInfo } from '../../shared/qcow2/image/info.ts';
import { chainFilesBelow } from '../chain-encryption.ts';
import { flag, option } from '../args.ts';
import { EXIT_OK, UsageError, type Command, type ParsedArgs } from '../command.ts';
import { CREATE_OPTION_NAMES, createOptionsFromArgs, optionsHelp, parseSize } from '../image-options.ts';
import { printable } from '../printable.ts';

/**
 * `cowbell create`: a new, empty qcow2 image. Unlike qemu-img, an existing file is refused unless
 * --force is given (then it is replaced atomically). With -b, -F is needed, as in qemu-img 7.2:
 * the backing file's format is never guessed (backing-format.ts).
 */
export const create: Command = {
  name: 'create',
  summary: 'make a new qcow2 image (refuses to replace a file unless --force)',
  usage: '[-f qcow2] [-o name=value,…] [-b BACKING -F qcow2|raw [-u]] [--force] [-q] IMAGE [SIZE]',
  options: {
    format: { type: 'string', short: 'f' },
    options: { type: 'string', short: 'o', multiple: true },
    backing: { type: 'string', short: 'b' },
    'backing-format': { type: 'string', short: 'F' },
    force: { type: 'boolean' },
    unsafe: { type: 'boolean', short: 'u' },
    quiet: { type: 'boolean', short: 'q' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 2 },
  optionsHelp: optionsHelp(CREATE_OPTION_NAMES),
  async run(args, io) {
    const format = option(args, 'format') ?? 'qcow2';
    if (format !== 'qcow2') throw new UsageError(`create: Cowbell creates qcow2 images only (not ${format})`);
    const imagePath = args.positionals[0] ?? '';
    // qemu-img create without -f makes a raw image: a script's disk.img would get a qcow2 header as its guest's first bytes.
    if (option(args, 'format') === undefined && RAW_LOOKING_NAME.test(imagePath)) {
      throw new UsageError(`create: ${printable(imagePath)} is named like a raw disk, which qemu-img create makes without -f; Cowbell makes qcow2 images only: pass -f qcow2 to make one under this name`);
    }
    const options = creationOptions(args);
    if (args.positionals[1] !== undefined) {
      // qemu-img refuses both too ("size must be specified only once"): which one was meant?
      if (options.size !== undefined) throw new UsageError('create: give the size once, as SIZE or as -o size=…, not both');
      options.size = parseSize(args.positionals[1]);
    }
    if (options.size === undefined && options.backingFile === undefined) throw new UsageError('create: give a SIZE (or a backing file to take it from)');
    const force = flag(args, 'force');
    if (!force && fs.existsSync(imagePath)) throw new UsageError(`create: ${imagePath} already exists; pass --force to replace it`);
    if (options.backingFile !== undefined) {
      options.backingFormat = requiredBackingFormat('create', options.backingFormat, resolveBackingPath(imagePath, options.backingFile));
    }
    createImage({ ...options, path: imagePath, overwrite: force, backingMayBeMissing: flag(args, 'unsafe') });
    if (!flag(args, 'quiet')) {
      io.out(formattingLine(imagePath, options));
      if (options.backingFile !== undefined) {
        const encrypted = chainFilesBelow(imagePath).filter((file) => file.encryption !== null);
        if (encrypted.length > 0) io.err(clearOverlayNote(imagePath, encrypted.map((file) => file.path)));
      }
    }
    return EXIT_OK;
  },
};

/** Names a raw disk image usually has. */
const RAW_LOOKING_NAME = /\.(img|raw|bin|dd)$/i;

function creationOptions(args: ParsedArgs): CreateOptions {
  const raw = args.values.options;
  const options = createOptionsFromArgs(Array.isArray(raw) ? raw.filter((value): value is string => typeof value === 'string') : []);
  const backing = option(args, 'backing');
  if (backing !== undefined) {
    if (options.backingFile !== undefined && options.backingFile !== backing) throw new UsageError('create: -b and -o backing_file disagree');
    options.backingFile = backing;
  }
  // qemu-img's words: an empty name is a mistake (an unset variable), not "no backing file".
  if (options.backingFile === '') throw new UsageError('create: expected a backing file name, got an empty string');
  const backingFormat = option(args, 'backing-format');
  if (backingFormat !== undefined) {
    if (!isImageFormat(backingFormat)) throw new UsageError(`create: backing format must be qcow2 or raw, not ${backingFormat}`);
    options.backingFormat = backingFormat;
  }
  return options;
}

/** qemu-img's confirmation line, with the values the image really got. */
function formattingLine(imagePath: string, options: CreateOptions): string {
  const info = readImageInfo(imagePath);
  const specific = info['format-specific'].data;
  const parts = [`fmt=qcow2`, `cluster_size=${info['cluster-size']}`];
  if (info['backing-filename'] !== undefined) parts.push(`backing_file=${info['backing-filename']}`);
  if (info['backing-filename-format'] !== undefined) parts.push(`backing_fmt=${info['backing-filename-format']}`);
  parts.push(
    `compat=${specific.compat}`,
    `extended_l2=${specific['extended-l2'] ? 'on' : 'off'}`,
    `compression_type=${specific['compression-type']}`,
    `preallocation=${options.preallocation ?? 'off'}`,
    `size=${info['virtual-size']}`,
    `refcount_bits=${specific['refcount-bits']}`,
  );
  return `Formatting '${imagePath}', ${parts.join(' ')}\n`;
}

/**
 * A plain overlay over an encrypted file (qemu-img create -b makes one too): what the VM writes to
 * it is stored in the clear. The app's New Linked Clone dialog says the same before it is made.
 */
function clearOverlayNote(imagePath: string, encrypted: string[]): string {
  const names = encrypted.map((file) => printable(file)).join(', ');
  return `cowbell: note: ${printable(imagePath)} is not encrypted, though ${names} ${encrypted.length === 1 ? 'is' : 'are'}: what the VM writes to it is stored in the clear (as qemu-img create -b makes it); \`cowbell encrypt ${printable(imagePath)}\` with the same passphrase encrypts it\n`;
}
