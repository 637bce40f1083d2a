import { formatBytes } from '../../shared/format-units.ts';
import { typedGuestPath, type StateFiles } from '../../shared/qcow2/files/state-files.ts';
import type { GuestFileEntry, GuestVolumeInfo } from '../../shared/qcow2/model.ts';
import { flag, option } from '../args.ts';
import { EXIT_OK, type Command } from '../command.ts';
import { parseImageState, withStateFiles } from '../image-state.ts';
import { PASSPHRASE_OPTIONS, VOLUME_PASSPHRASE_HELP, VOLUME_PASSPHRASE_OPTIONS } from '../passphrase-input.ts';
import { printable, printableListed } from '../printable.ts';
import { widest } from '../text-columns.ts';

export const ls: Command = {
  name: 'ls',
  summary: 'the files in a folder of a state (the current disk or a snapshot), read-only',
  usage: '[--json] [-U] [-l SNAPSHOT] [--passphrase-file FILE] [--volume-passphrase-file FILE]... IMAGE[@SNAPSHOT] [PATH]',
  help: [
    '  PATH        a folder (or file) inside the state, "/" when omitted; on a disk with a',
    '              partition table, "/" lists the volumes ("/1", "/2", …) and "/1/etc" is inside one',
    '  -l SNAPSHOT the snapshot to read (name or id), the same as IMAGE@SNAPSHOT',
    '  --json      the entries (name, path, kind, size, mtimeMs, target; damaged: why an entry the',
    '              filesystem is damaged at is listed by name only) and the volumes as JSON',
  ].join('\n') + `\n${VOLUME_PASSPHRASE_HELP}`,
  options: {
    json: { type: 'boolean' },
    snapshot: { type: 'string', short: 'l' },
    'force-share': { type: 'boolean', short: 'U' },
    ...PASSPHRASE_OPTIONS,
    ...VOLUME_PASSPHRASE_OPTIONS,
    help: { type: 'boolean', short: 'h' },
  },
  positionals: { min: 1, max: 2 },
  // What it prints is its result: output it could not write fails it.
  printsItsResult: () => true,
  async run(args, io) {
    const [argument = '', guestPath = '/'] = args.positionals;
    const { image, state } = parseImageState(argument, option(args, 'snapshot'));
    const listing = await withStateFiles(args, io, image, state, (files) => listPath(files, guestPath));
    if (flag(args, 'json')) io.out(`${JSON.stringify({ path: listing.path, entries: listing.entries, volumes: listing.volumes }, null, 2)}\n`);
    else io.out(listing.volumesAtRoot ? describeVolumes(listing.volumes) : describeEntries(listing.entries));
    // Listed by name only: why, on stderr, as a caution is.
    for (const entry of listing.entries) if (entry.damaged !== undefined) io.err(`cowbell: note: ${printable(entry.path)} cannot be read: ${entry.damaged}\n`);
    return EXIT_OK;
  },
};

interface Listing {
  path: string;
  entries: GuestFileEntry[];
  volumes: GuestVolumeInfo[];
  /** "/" of a partitioned disk: the entries are its volumes. */
  volumesAtRoot: boolean;
}

async function listPath(files: StateFiles, guestPath: string): Promise<Listing> {
  const entry = await files.stat(await typedGuestPath(files, guestPath));
  const entries = entry.kind === 'directory' ? await files.list(entry.path) : [entry];
  const volumesAtRoot = entry.path === '/' && files.volumes.some((volume) => volume.table !== 'none');
  return { path: entry.path, entries, volumes: [...files.volumes], volumesAtRoot };
}

/** The entries as a table (names in the listing's spelling, printableListed; a link's target as printable). */
export function describeEntries(entries: GuestFileEntry[]): string {
  const rows = entries.map((entry) => [entry.damaged !== undefined ? 'damaged' : entry.kind === 'directory' ? 'dir' : entry.kind === 'symlink' ? 'link' : entry.kind, entry.kind === 'directory' || entry.damaged !== undefined ? '' : formatBytes(entry.size), dateOf(entry.mtimeMs), entry.kind === 'symlink' ? `${printableListed(entry.name)} -> ${printable(entry.target ?? '')}` : printableListed(entry.name)]);
  return table(['KIND', 'SIZE', 'MODIFIED (UTC)', 'NAME'], rows, [false, true, false, false]) + `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}\n`;
}

function describeVolumes(volumes: GuestVolumeInfo[]): string {
  const rows = volumes.map((volume) => [
    volume.name,
    formatBytes(volume.length),
    volume.filesystem ?? (volume.physicalVolumeOf !== undefined ? `lvm-pv (${volume.physicalVolumeOf})` : volume.encryption !== undefined ? `${volume.encryption.format} (${volume.encryption.unlocked ? 'unlocked' : 'locked'})` : (volume.holds ?? '-')),
    volume.label ?? volume.encryption?.label ?? '',
    [volume.logicalVolume !== undefined ? `lvm ${volume.logicalVolume.group}/${volume.logicalVolume.name}` : volume.encryptedIn !== undefined ? '' : `${volume.table} ${volume.partitionType ?? ''}`.trim(), volume.encryptedIn !== undefined ? `inside /${volume.encryptedIn}` : ''].filter((part) => part !== '').join(', '),
    volume.problem ?? volume.encryption?.problem ?? '',
  ]);
  return table(['VOLUME', 'SIZE', 'FILESYSTEM', 'LABEL', 'PARTITION', 'PROBLEM'], rows, [false, true, false, false, false, false]);
}

function dateOf(mtimeMs: number | null): string {
  return mtimeMs === null ? '-' : new Date(mtimeMs).toISOString().slice(0, 16).replace('T', ' ');
}

/** Columns padded to their widest cell (right-aligned where `right`); trailing blanks trimmed. */
function table(header: string[], rows: string[][], right: boolean[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, column) => widest(all.map((row) => row[column] ?? '')));
  return all.map((row) => row.map((cell, column) => (right[column] ? cell.padStart(widths[column] ?? 0) : cell.padEnd(widths[column] ?? 0))).join('  ').trimEnd()).join('\n') + '\n';
}
