import { formatBytes } from '../../shared/format-units.ts';
import { Qcow2Error } from '../../shared/qcow2/errors.ts';
import { readImageInfo } from '../../shared/qcow2/image/info.ts';
import type { BackingChain, EncryptInfo, ImageInfo, Qcow2SpecificInfo, SnapshotInfo } from '../../shared/qcow2/model.ts';
import { flag, outputForm, refuseFormatOtherThanQcow2 } from '../args.ts';
import { notePreview } from '../note-preview.ts';
import { printable } from '../printable.ts';
import { EXIT_OK, type Command } from '../command.ts';

export const info: Command = {
  name: 'info',
  summary: 'what an image is: sizes, format details, backing file, snapshots',
  usage: '[--json | --output=json|human] [--backing-chain] [-f qcow2] [-U] IMAGE',
  options: {
    json: { type: 'boolean' },
    output: { type: 'string' },
    format: { type: 'string', short: 'f' },
    'backing-chain': { type: 'boolean' },
    'force-share': { type: 'boolean', short: 'U' },
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 1 },
  // What it prints is its result: output it could not write fails it.
  printsItsResult: () => true,
  async run(args, io) {
    const output = outputForm(args, 'info');
    refuseFormatOtherThanQcow2(args, 'info');
    const path = args.positionals[0] ?? '';
    // A disk in use is described anyway, with a note saying so (its header says what it is even while a VM runs); -U is accepted as in qemu-img.
    if (!flag(args, 'backing-chain')) {
      const image = readImageInfo(path);
      io.out(output === 'json' ? `${JSON.stringify(image, null, 4)}\n` : describe(image));
      return EXIT_OK;
    }
    // Loaded here: a plain info (most runs, and start-up is most of their time) does not read the chain.
    const { readBackingChain } = await import('../../shared/qcow2/chain/chain.ts');
    const chain = chainInfo(readBackingChain(path));
    io.out(output === 'json' ? `${JSON.stringify(chain, null, 4)}\n` : chain.map((image) => (image.format === 'raw' ? describeRaw(image) : describe(image))).join('\n'));
    return EXIT_OK;
  },
};

/** What `qemu-img info` says of a raw file. */
interface RawImageInfo {
  'virtual-size': number;
  filename: string;
  format: 'raw';
  'actual-size': number;
  'dirty-flag': false;
}

/**
 * `--backing-chain`: the disk and each file below it, as qemu-img lists them (a JSON array; blank
 * lines between in the human form). A chain that cannot be opened whole fails, as qemu-img's does.
 */
function chainInfo(chain: BackingChain): (ImageInfo | RawImageInfo)[] {
  return chain.files.map((file) => {
    if (file.problem !== null) throw new Qcow2Error(file.problem.kind === 'missing' ? 'BACKING_NOT_FOUND' : 'CORRUPT', file.problem.message);
    if (file.format === 'raw') return { 'virtual-size': file.virtualSize ?? 0, filename: file.path, format: 'raw', 'actual-size': file.allocatedBytes ?? 0, 'dirty-flag': false };
    return readImageInfo(file.path);
  });
}

function describeRaw(image: RawImageInfo): string {
  return [`image: ${printable(image.filename)}`, 'file format: raw', `virtual size: ${formatBytes(image['virtual-size'])} (${image['virtual-size']} bytes)`, `disk size: ${formatBytes(image['actual-size'])}`, ''].join('\n');
}

/** The human form, laid out like `qemu-img info`. */
export function describe(image: ImageInfo): string {
  const lines = [
    // Names and paths one per line whatever they hold (a line break in a backing name forged more lines).
    `image: ${printable(image.filename)}`,
    `file format: ${image.format}`,
    `virtual size: ${formatBytes(image['virtual-size'])} (${image['virtual-size']} bytes)`,
    `disk size: ${formatBytes(image['actual-size'])}`,
  ];
  if (image.encrypted) lines.push('encrypted: yes');
  lines.push(`cluster_size: ${image['cluster-size']}`);
  const backing = image['backing-filename'];
  if (backing !== undefined) {
    const full = image['full-backing-filename'];
    lines.push(full !== undefined && full !== backing ? `backing file: ${printable(backing)} (actual path: ${printable(full)})` : `backing file: ${printable(backing)}`);
    if (image['backing-filename-format'] !== undefined) lines.push(`backing file format: ${printable(image['backing-filename-format'])}`);
  }
  if (image.snapshots !== undefined && image.snapshots.length > 0) {
    lines.push('Snapshot list:', snapshotRow('ID', 'TAG', 'VM SIZE', 'DATE', 'VM CLOCK', 'ICOUNT'));
    for (const snapshot of image.snapshots) lines.push(snapshotLine(snapshot));
    // Cowbell's notes below qemu-img's table, whose columns scripts may read.
    const noted = image.snapshots.filter((snapshot) => snapshot.note !== undefined);
    if (noted.length > 0) lines.push('Snapshot notes:', ...noted.map((snapshot) => `    ${snapshot.id} ${printable(snapshot.name)}: ${notePreview(snapshot.note ?? '')}`));
  }
  const specific = image['format-specific'].data;
  lines.push(
    'Format specific information:',
    `    compat: ${specific.compat}`,
    `    compression type: ${specific['compression-type']}`,
  );
  // qemu-img's order; the three v3-only lines are absent for compat 0.10.
  if (specific['lazy-refcounts'] !== undefined) lines.push(`    lazy refcounts: ${specific['lazy-refcounts']}`);
  if (specific.bitmaps !== undefined) lines.push(...bitmapLines(specific.bitmaps));
  lines.push(`    refcount bits: ${specific['refcount-bits']}`);
  if (specific['data-file'] !== undefined) lines.push(`    data file: ${printable(specific['data-file'])}`);
  if (specific['data-file-raw'] !== undefined) lines.push(`    data file raw: ${specific['data-file-raw']}`);
  if (specific.encrypt !== undefined) lines.push(...encryptLines(specific.encrypt));
  if (specific.corrupt !== undefined) lines.push(`    corrupt: ${specific.corrupt}`);
  if (specific['extended-l2'] !== undefined) lines.push(`    extended l2: ${specific['extended-l2']}`);
  if (image['dirty-flag']) lines.push('Note: the image is marked dirty (not closed cleanly); run check to repair it.');
  if (image['read-only-reason'] !== undefined) lines.push(`Note: read-only: ${image['read-only-reason']}`);
  const unencrypted = unencryptedWarning(image['unencrypted-bytes'], image['unencrypted-clusters'], specific.encrypt?.format);
  if (unencrypted !== null) lines.push(unencrypted);
  return `${lines.join('\n')}\n`;
}

/** The `bitmaps:` block as qemu-img info prints it (each numbered, its flags numbered). */
function bitmapLines(bitmaps: NonNullable<Qcow2SpecificInfo['bitmaps']>): string[] {
  const lines = ['    bitmaps:'];
  bitmaps.forEach((bitmap, index) => {
    lines.push(`        [${index}]:`, '            flags:', ...bitmap.flags.map((flag, flagIndex) => `                [${flagIndex}]: ${flag}`), `            name: ${printable(bitmap.name)}`, `            granularity: ${bitmap.granularity}`);
  });
  return lines;
}

/** The `encrypt:` block as qemu-img info prints it (its JSON keys with spaces, slots numbered). */
function encryptLines(encrypt: EncryptInfo): string[] {
  const lines = ['    encrypt:'];
  const field = (name: string, value: string | number | undefined, indent = '        '): void => {
    if (value !== undefined) lines.push(`${indent}${name}: ${printable(String(value))}`);
  };
  field('ivgen alg', encrypt['ivgen-alg']);
  field('hash alg', encrypt['hash-alg']);
  field('cipher alg', encrypt['cipher-alg']);
  field('uuid', encrypt.uuid);
  field('ivgen hash alg', encrypt['ivgen-hash-alg']);
  field('format', encrypt.format);
  field('cipher mode', encrypt['cipher-mode']);
  if (encrypt.slots !== undefined) {
    lines.push('        slots:');
    encrypt.slots.forEach((slot, index) => {
      lines.push(`            [${index}]:`);
      const inner = '                ';
      field('active', String(slot.active), inner);
      field('iters', slot.iters, inner);
      field('key offset', slot['key-offset'], inner);
      field('stripes', slot.stripes, inner);
    });
  }
  field('payload offset', encrypt['payload-offset']);
  field('master key iters', encrypt['master-key-iters']);
  return lines;
}

/**
 * Cowbell's own finding, shared by info and check: QEMU stores compressed clusters of an encrypted
 * disk as plaintext. Null when there are none. The remedy depends on the encryption (the disk's
 * encrypt.format): compact keeps LUKS and encrypts them, but does not take the old AES encryption,
 * which encrypt replaces with LUKS.
 */
export function unencryptedWarning(bytes: number | undefined, clusters: number | undefined, encryption: string | undefined): string | null {
  if (bytes === undefined || bytes === 0) return null;
  const count = clusters === undefined ? '' : ` (${clusters} compressed cluster${clusters === 1 ? '' : 's'})`;
  const remedy = encryption === 'aes' ? '`cowbell encrypt` encrypts them, moving the disk to LUKS (compact does not take the old AES encryption)' : '`cowbell compact` encrypts them';
  return `Warning: ${formatBytes(bytes)} of this encrypted disk${count} is stored unencrypted: QEMU writes compressed clusters of an encrypted disk as plaintext; ${remedy}`;
}

/** `qemu-img snapshot -l`'s output: its table, or nothing for an image without snapshots. */
export function snapshotListTable(snapshots: readonly SnapshotInfo[]): string {
  if (snapshots.length === 0) return '';
  return [`Snapshot list:`, snapshotRow('ID', 'TAG', 'VM SIZE', 'DATE', 'VM CLOCK', 'ICOUNT'), ...snapshots.map(snapshotLine), ''].join('\n');
}

function snapshotRow(id: string, tag: string, size: string, date: string, clock: string, icount: string): string {
  return `${id.padEnd(9)} ${tag.padEnd(17)}${size.padStart(8)}${date.padStart(20)}${clock.padStart(13)}${icount.padStart(11)}`;
}

function snapshotLine(snapshot: SnapshotInfo): string {
  return snapshotRow(
    snapshot.id,
    printable(snapshot.name),
    formatBytes(snapshot['vm-state-size']),
    localDateTime(snapshot['date-sec']),
    vmClock(snapshot['vm-clock-sec'], snapshot['vm-clock-nsec']),
    snapshot.icount === undefined ? '' : String(snapshot.icount),
  );
}

function localDateTime(seconds: number): string {
  const date = new Date(seconds * 1000);
  const two = (value: number) => String(value).padStart(2, '0');
  return `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())} ${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())}`;
}

function vmClock(seconds: number, nanoseconds: number): string {
  const two = (value: number) => String(value).padStart(2, '0');
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const milliseconds = String(Math.floor(nanoseconds / 1_000_000)).padStart(3, '0');
  return `${two(hours)}:${two(minutes)}:${two(seconds % 60)}.${milliseconds}`;
}
