import { open, readdir, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import type { PathCompletion } from '../shared/ipc/contract.ts';

const IMAGE_EXTENSIONS = ['.qcow2', '.qcow', '.img'];
const QCOW_MAGIC = [0x51, 0x46, 0x49, 0xfb]; // "QFI\xfb"
const MAX_RESULTS = 200;
// Reading a header per file is cheap, but a folder of thousands of files must not stall the field.
const MAX_MAGIC_PROBES = 64;

/**
 * Folders and disk images (by extension or qcow2 magic) whose path starts with `prefix`.
 * A prefix ending in a separator lists that folder; `~` stands for the home folder.
 * Anything unreadable simply completes to nothing.
 */
export async function completePath(prefix: string, home: string = homedir()): Promise<PathCompletion[]> {
  const expanded = expandHome(prefix, home);
  if (!isAbsolute(expanded)) return [];
  const endsWithSeparator = expanded.endsWith('/') || expanded.endsWith(sep);
  const folder = endsWithSeparator ? expanded : dirname(expanded);
  const stem = endsWithSeparator ? '' : basename(expanded);

  let entries;
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch {
    return [];
  }

  const showHidden = stem.startsWith('.');
  const candidates = entries
    .filter((entry) => entry.name.startsWith(stem) && (showHidden || !entry.name.startsWith('.')))
    .sort((a, b) => a.name.localeCompare(b.name));

  const folders: PathCompletion[] = [];
  const images: PathCompletion[] = [];
  let probes = 0;
  for (const entry of candidates) {
    if (folders.length + images.length >= MAX_RESULTS) break;
    const path = join(folder, entry.name);
    const kind = await entryKind(path, entry.isDirectory(), entry.isFile(), entry.isSymbolicLink());
    if (kind === 'folder') folders.push({ path, kind });
    else if (kind === 'file' && looksLikeImageName(entry.name)) images.push({ path, kind: 'image' });
    else if (kind === 'file' && probes < MAX_MAGIC_PROBES) {
      probes += 1;
      if (await hasQcowMagic(path)) images.push({ path, kind: 'image' });
    }
  }
  return [...folders, ...images];
}

function expandHome(prefix: string, home: string): string {
  if (prefix === '~') return home + sep;
  // The rest as typed: join() would normalise '~/.' (the start of a hidden name) to the home folder itself.
  if (prefix.startsWith('~/') || prefix.startsWith(`~${sep}`)) return `${home.endsWith(sep) ? home : home + sep}${prefix.slice(2)}`;
  return prefix;
}

async function entryKind(
  path: string,
  isDirectory: boolean,
  isFile: boolean,
  isSymbolicLink: boolean,
): Promise<'folder' | 'file' | 'other'> {
  if (isDirectory) return 'folder';
  if (isFile) return 'file';
  if (!isSymbolicLink) return 'other';
  try {
    const target = await stat(path);
    return target.isDirectory() ? 'folder' : target.isFile() ? 'file' : 'other';
  } catch {
    return 'other';
  }
}

function looksLikeImageName(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((extension) => lower.endsWith(extension));
}

async function hasQcowMagic(path: string): Promise<boolean> {
  try {
    const handle = await open(path, 'r');
    try {
      const header = new Uint8Array(QCOW_MAGIC.length);
      const { bytesRead } = await handle.read(header, 0, header.length, 0);
      return bytesRead === header.length && QCOW_MAGIC.every((byte, index) => header[index] === byte);
    } finally {
      await handle.close();
    }
  } catch {
    return false;
  }
}
