import { printable } from '../printable.ts';
import { hex } from '../../shared/qcow2/format/bytes.ts';
import type { GuestReader } from '../../shared/qcow2/image/guest-reader.ts';
import { externalDataFile, Qcow2Image } from '../../shared/qcow2/image/image.ts';
import { mapImage } from '../../shared/qcow2/image/map.ts';
import type { MapEntry } from '../../shared/qcow2/model.ts';
import { RawImage } from '../../shared/qcow2/image/raw-image.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { flag, option, outputForm, refuseFormatOtherThanQcow2 } from '../args.ts';
import { parseSize } from '../image-options.ts';
import { EXIT_OK, UsageError, type Command, type ParsedArgs } from '../command.ts';

/** `cowbell map`: where the guest disk's data lives, in `qemu-img map`'s two layouts. */
export const map: Command = {
  name: 'map',
  summary: 'allocated, zero and backing-file ranges of the guest disk (qemu-img map)',
  usage: '[--json | --output=json|human] [--start-offset OFFSET] [--max-length LENGTH] [-f qcow2] [-U] IMAGE',
  options: {
    json: { type: 'boolean' },
    output: { type: 'string' },
    format: { type: 'string', short: 'f' },
    'start-offset': { type: 'string', short: 's' },
    'max-length': { type: 'string', short: 'l' },
    'force-share': { type: 'boolean', short: 'U' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 1 },
  // What it prints is its result: output it could not write fails it.
  printsItsResult: () => true,
  async run(args, io) {
    const output = outputForm(args, 'map');
    refuseFormatOtherThanQcow2(args, 'map');
    const imagePath = args.positionals[0] ?? '';
    const image = Qcow2Image.open(imagePath, { readOnly: true, refuseInUse: !flag(args, 'force-share') });
    try {
      const start = sizeOption(args, 'start-offset') ?? 0;
      const length = sizeOption(args, 'max-length');
      const entries = clipEntries(mapImage(image), start, length === undefined ? image.virtualSize : start + length);
      io.out(output === 'json' ? mapJson(entries) : mapHuman(entries, chainFileNames(imagePath, image)));
    } finally {
      image.close();
    }
    return EXIT_OK;
  },
};

function sizeOption(args: ParsedArgs, name: string): number | undefined {
  const text = option(args, name);
  if (text === undefined) return undefined;
  const value = parseSize(text);
  if (value < 0) throw new UsageError(`map: --${name} must not be negative`);
  return value;
}

/** The entries within [start, end), cut at both ends as qemu-img map --start-offset/--max-length reports them. */
export function clipEntries(entries: readonly MapEntry[], start: number, end: number): MapEntry[] {
  const clipped: MapEntry[] = [];
  for (const entry of entries) {
    const from = Math.max(entry.start, start);
    const to = Math.min(entry.start + entry.length, end);
    if (to <= from) continue;
    const cut = from - entry.start;
    clipped.push({ ...entry, start: from, length: to - from, ...(entry.offset === undefined ? {} : { offset: entry.offset + cut }) });
  }
  return clipped;
}

/** qemu-img's JSON layout: one entry per line, keys in its order. */
export function mapJson(entries: readonly MapEntry[]): string {
  const lines = entries.map((entry) => {
    const fields = [
      `"start": ${entry.start}`,
      `"length": ${entry.length}`,
      `"depth": ${entry.depth}`,
      `"present": ${entry.present}`,
      `"zero": ${entry.zero}`,
      `"data": ${entry.data}`,
      `"compressed": ${entry.compressed}`,
    ];
    if (entry.offset !== undefined) fields.push(`"offset": ${entry.offset}`);
    return `{ ${fields.join(', ')}}`;
  });
  return `[${lines.join(',\n')}]\n`;
}

/** qemu-img's human layout: only ranges with data, where they are mapped to, and in which file. */
export function mapHuman(entries: readonly MapEntry[], fileNames: readonly string[]): string {
  const column = (value: number): string => (value === 0 ? '0' : hex(value)).padEnd(16);
  let text = `${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`;
  for (const entry of entries) {
    if (entry.data && entry.offset === undefined) {
      throw new Qcow2Error('UNSUPPORTED_FEATURE', 'The image has encrypted or compressed clusters, whose place in the file the human layout cannot show; use --output=json');
    }
    if (entry.data && !entry.zero) text += `${column(entry.start)}${column(entry.length)}${column(entry.offset ?? 0)}${printable(fileNames[entry.depth] ?? '')}\n`;
  }
  return text;
}

/**
 * The file at each depth of the chain: the image as named, then each backing file as resolved —
 * or, for a layer whose data is in an external data file, that file's name as the image stores it
 * (as qemu-img map prints it).
 */
function chainFileNames(imagePath: string, image: Qcow2Image): string[] {
  const names = [dataFileOr(image, imagePath)];
  let layer: GuestReader | null = image;
  while (layer instanceof Qcow2Image && layer.backing !== null) {
    const backing: GuestReader = layer.backing;
    names.push(backing instanceof Qcow2Image ? dataFileOr(backing, backing.file.path) : backing instanceof RawImage ? backing.file.path : '');
    layer = backing;
  }
  return names;
}

function dataFileOr(image: Qcow2Image, name: string): string {
  return image.externalData ? (externalDataFile(image.header) ?? name) : name;
}
