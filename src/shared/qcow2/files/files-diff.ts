/**
 * Which files differ between two states of a disk: added, removed, and changed by size, modification
 * time, kind, symlink target or content. Content is looked at only for files whose size and time are
 * equal, and only where the guest ranges that differ between the states (from the mapping tables,
 * passed in by the caller: files/ does not reach into snapshots/) touch the file's extents; the bytes
 * are then read from both states to confirm, because a changed cluster also holds its neighbours.
 * Inside a folder whose own time and size are unchanged, a name still leads to the same inode, so
 * the later state's extents alone decide; elsewhere both states' extents must match as well.
 * Folders are walked whole (a folder's time changes only with its direct entries) but a folder is
 * never reported as changed itself: what changed inside it is. Where the filesystem reader can tell
 * that a folder's names and inodes are decided by bytes the states share (unchangedFolder), only
 * the later state's entries are read, and the earlier state's only for entries whose bytes changed.
 */
import { Qcow2Error } from '../errors.ts';
import { bytesEqual } from '../format/zeroes.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import type { GuestFileDifference, GuestFileEntry, GuestFilesDiff, GuestVolumeInfo } from '../model.ts';
import { SAME_METADATA, type ByteRange, type ChangedBytes, type UnchangedFolder } from './filesystem.ts';
import { GuestRangeSet } from './guest-range-set.ts';
import type { StateFiles } from './state-files.ts';
import { guestRangesOf, samePlace } from './volume-ranges.ts';

export interface FilesDiffOptions {
  /** The states' names as the result reports them ("current", a snapshot's name). */
  from: string;
  to: string;
  /** Guest ranges the two states map differently (snapshots/diff.ts diffStates). */
  changedRanges: readonly ByteRange[];
  job?: JobContext;
}

type Reason = NonNullable<GuestFileDifference['reasons']>[number];

/** How one volume's files with an unchanged size and time are checked for changed content. */
type ContentCheck = 'none' | 'changed-ranges' | 'read';

const COMPARE_CHUNK_BYTES = 1024 * 1024;

export async function diffStateFiles(before: StateFiles, after: StateFiles, options: FilesDiffOptions): Promise<GuestFilesDiff> {
  const skipped: GuestFilesDiff['skipped'] = [];
  const walk = new FilesWalk(before, after, new GuestRangeSet(options.changedRanges), options.job ?? silentJob, skipped);
  for (const name of volumeNames(before.volumes, after.volumes)) {
    const volumeBefore = before.volumes.find((volume) => volume.name === name);
    const volumeAfter = after.volumes.find((volume) => volume.name === name);
    const encrypted = encryptionProblem(volumeBefore, volumeAfter, before.volumes, after.volumes);
    if (encrypted === 'compared inside') continue;
    const problem = encrypted ?? unreadable(volumeBefore) ?? unreadable(volumeAfter);
    if (problem !== null) {
      skipped.push({ volume: volumeLabel(name), reason: problem });
      continue;
    }
    await walk.volume(name, volumeBefore, volumeAfter);
  }
  skipped.sort((a, b) => byCodePoint(a.path ?? a.volume, b.path ?? b.volume));
  walk.finish();
  const differences = walk.differences;
  return { from: options.from, to: options.to, differences, bytes: bytesInvolved(differences), skipped };
}

/** Added and changed entries count their size in the later state, removed ones in the earlier. */
export function bytesInvolved(differences: readonly GuestFileDifference[]): number {
  let bytes = 0;
  for (const difference of differences) {
    if (difference.kind === 'directory') continue;
    bytes += (difference.change === 'removed' ? difference.sizeBefore : difference.sizeAfter) ?? 0;
  }
  return bytes;
}

function volumeNames(before: readonly GuestVolumeInfo[], after: readonly GuestVolumeInfo[]): string[] {
  const names = [...before.map((volume) => volume.name)];
  for (const volume of after) if (!names.includes(volume.name)) names.push(volume.name);
  return names;
}

function volumeLabel(name: string): string {
  return name === '' ? '/' : `/${name}`;
}

/**
 * Errors that leave one folder or file out of the comparison instead of ending it: what the guest
 * encrypted (ext4 encryption) or what its filesystem damaged in one place. The walk's own failures
 * (cancel, the disk's I/O errors) still end it.
 */
const PER_ENTRY_ERRORS = new Set<string>(['FILESYSTEM_UNSUPPORTED', 'FILESYSTEM_CORRUPT']);

/**
 * An encrypted volume (or one inside it) as files-diff takes it: an unlocked one's files are those
 * of the volumes inside it ('compared inside'); one locked in a state it is present in is skipped,
 * and so is everything inside it where it opens in one state only (a passphrase changed between
 * the two: its files would read as all added or all removed). Null for any other volume.
 */
function encryptionProblem(before: GuestVolumeInfo | undefined, after: GuestVolumeInfo | undefined, volumesBefore: readonly GuestVolumeInfo[], volumesAfter: readonly GuestVolumeInfo[]): string | 'compared inside' | null {
  const unlocked = (volume: GuestVolumeInfo | undefined): boolean | null => (volume?.encryption === undefined ? null : volume.encryption.unlocked);
  if (before?.encryption !== undefined || after?.encryption !== undefined) {
    const states = [unlocked(before), unlocked(after)].filter((state) => state !== null);
    if (states.every((state) => state)) return 'compared inside';
    if (states.some((state) => state)) return 'an encrypted volume the passphrases given open in one of the two states only (changed between them?): its files are not compared';
    const problem = before?.encryption?.problem ?? after?.encryption?.problem;
    return `an encrypted volume, locked${problem === undefined ? ': give its passphrase to compare its files' : ` (${problem})`}`;
  }
  const container = before?.encryptedIn ?? after?.encryptedIn;
  if (container === undefined) return null;
  const opened = [volumesBefore, volumesAfter].map((volumes) => unlocked(volumes.find((volume) => volume.name === container)));
  if (opened.includes(false)) return `inside the encrypted volume /${container}, which the passphrases given open in one of the two states only: not compared`;
  return null;
}

/** Why a volume present in a state cannot be compared, or null (an absent volume is compared as empty). */
function unreadable(volume: GuestVolumeInfo | undefined): string | null {
  if (volume === undefined) return null;
  if (volume.problem !== undefined) return volume.problem;
  if (volume.filesystem === null) return 'no filesystem Cowbell can read';
  return null;
}

class FilesWalk {
  readonly differences: GuestFileDifference[] = [];
  private foldersKnown = 0;
  private foldersDone = 0;
  /** Folders walked, by their identities (metAgain). */
  private readonly foldersWalked = new Set<string>();
  private contentCheck: ContentCheck = 'none';
  /** Whether the volume being compared lies at the same place with the same length in both states (unchangedFolder may be asked). */
  private sameVolumePlace = false;
  private readonly changedBytes: ChangedBytes;
  /** The volume being walked, as skipped entries name it. */
  private volumeName = '/';

  private readonly before: StateFiles;
  private readonly after: StateFiles;
  private readonly changed: GuestRangeSet;
  private readonly job: JobContext;
  private readonly skipped: GuestFilesDiff['skipped'];

  constructor(before: StateFiles, after: StateFiles, changed: GuestRangeSet, job: JobContext, skipped: GuestFilesDiff['skipped']) {
    this.before = before;
    this.after = after;
    this.changed = changed;
    this.job = job;
    this.skipped = skipped;
    this.changedBytes = (offset, length) => changed.intersects(offset, length);
  }

  async volume(name: string, volumeBefore: GuestVolumeInfo | undefined, volumeAfter: GuestVolumeInfo | undefined): Promise<void> {
    const root = volumeLabel(name);
    this.volumeName = root;
    if (volumeBefore === undefined || volumeAfter === undefined) {
      const side = volumeBefore === undefined ? 'added' : 'removed';
      const entry = await (side === 'added' ? this.after : this.before).stat(root);
      if (name !== '') this.report(side, entry);
      await this.wholeTree(side, root);
      return;
    }
    this.contentCheck = this.contentCheckFor(volumeBefore, volumeAfter);
    this.sameVolumePlace = samePlace(volumeBefore, volumeAfter) && volumeBefore.filesystem === volumeAfter.filesystem;
    this.foldersKnown++;
    // A volume's root has no parent entry to compare: its entries are taken as possibly renamed.
    await this.compareFolder(root, false);
  }

  finish(): void {
    this.job.progress('comparing files', this.foldersDone, this.foldersKnown, 'steps');
  }

  private contentCheckFor(volumeBefore: GuestVolumeInfo, volumeAfter: GuestVolumeInfo): ContentCheck {
    // A volume that moved puts the same file at other guest offsets: the changed ranges say nothing then.
    if (volumeBefore.offset !== volumeAfter.offset || (volumeBefore.segments !== undefined) !== (volumeAfter.segments !== undefined)) return 'read';
    // A volume in pieces (an LVM logical volume) that was moved or extended: its files lie elsewhere too.
    if (volumeBefore.segments !== undefined && !samePlace(volumeBefore, { ...volumeAfter, length: volumeBefore.length })) return 'read';
    const touched = [volumeBefore, volumeAfter].some((volume) => guestRangesOf(volume, 0, volume.length).some((range) => this.changed.intersects(range.offset, range.length)));
    return touched ? 'changed-ranges' : 'none';
  }

  private folderDone(): void {
    this.foldersDone++;
    if (this.foldersDone % 16 === 0) {
      this.job.throwIfCancelled();
      this.job.progress('comparing files', this.foldersDone, this.foldersKnown, 'steps');
    }
  }

  /**
   * `sameEntries`: the folder's own time and size are equal in both states, so its names still lead
   * to the same inodes (a rename, link or removal in it would have changed its time).
   */
  private async compareFolder(path: string, sameEntries: boolean): Promise<void> {
    const lists = await this.orSkip(path, async () => {
      const unchanged = this.sameVolumePlace ? ((await this.after.unchangedFolder?.(path, this.changedBytes, this.before)) ?? null) : null;
      return unchanged ?? (await Promise.all([this.before.list(path), this.after.list(path)]));
    });
    if (lists === null) {
      this.folderDone();
      return;
    }
    if (!Array.isArray(lists)) {
      await this.compareUnchangedFolder(lists, sameEntries);
      return;
    }
    const [listBefore, listAfter] = lists;
    // Both lists by name, then walked side by side (a listing mostly comes sorted already).
    const sortedBefore = byNameOnce(listBefore);
    const sortedAfter = byNameOnce(listAfter);
    let indexBefore = 0;
    let indexAfter = 0;
    while (indexBefore < sortedBefore.length || indexAfter < sortedAfter.length) {
      const entryBefore = sortedBefore[indexBefore];
      const entryAfter = sortedAfter[indexAfter];
      const order = entryBefore === undefined ? 1 : entryAfter === undefined ? -1 : byCodePoint(entryBefore.name, entryAfter.name);
      if (order > 0) {
        await this.one('added', entryAfter!);
        indexAfter++;
      } else if (order < 0) {
        await this.one('removed', entryBefore!);
        indexBefore++;
      } else {
        await this.compareEntries(entryBefore!, entryAfter!, sameEntries);
        indexBefore++;
        indexAfter++;
      }
    }
    this.folderDone();
  }

  /**
   * A folder whose names and inodes read the same in both states (by the bytes that decide them):
   * its entries are taken from the later state alone, without those the reader found wholly
   * unchanged. An entry whose metadata is unchanged is equal in both states, so only what lies
   * below it (a folder's entries, a file's content) is compared; any other entry is compared with
   * the earlier state's.
   */
  private async compareUnchangedFolder(folder: UnchangedFolder, sameEntries: boolean): Promise<void> {
    const { entries, flags } = folder;
    for (let index = 0; index < entries.length; index++) {
      const entry = entries[index] as GuestFileEntry;
      const flag = flags[index] as number;
      await this.compareEntries((flag & SAME_METADATA) === 0 ? await this.before.stat(entry.path) : entry, entry, sameEntries);
    }
    this.folderDone();
  }

  /** An entry only one state has, with everything under it when it is a folder. */
  private async one(side: 'added' | 'removed', entry: GuestFileEntry): Promise<void> {
    this.report(side, entry);
    if (entry.kind === 'directory' && !this.metAgain(entry.path, `${side}:${entry.folderId ?? ''}`, entry.folderId !== undefined)) {
      this.foldersKnown++;
      await this.wholeTree(side, entry.path);
    }
  }

  private async wholeTree(side: 'added' | 'removed', path: string): Promise<void> {
    const entries = await this.orSkip(path, () => (side === 'added' ? this.after : this.before).list(path));
    for (const entry of (entries ?? []).sort((a, b) => byCodePoint(a.name, b.name))) await this.one(side, entry);
    this.folderDone();
  }

  /**
   * Whether the folder (by its identity in the states compared, `key`) was walked already: a
   * damaged filesystem's folder inside itself, or under two names, would be walked without end or
   * 2^depth times. Noted as skipped. `known`: the filesystem gives folder identities.
   */
  private metAgain(path: string, key: string, known: boolean): boolean {
    if (!known) return false;
    if (!this.foldersWalked.has(key)) {
      this.foldersWalked.add(key);
      return false;
    }
    this.skipped.push({ volume: this.volumeName, path, reason: 'the same folder as one compared already (a folder inside itself, or under two names: the filesystem is damaged)' });
    return true;
  }

  /** `read()`, or null with the entry noted as skipped where the guest's filesystem will not give it (PER_ENTRY_ERRORS). */
  private async orSkip<T>(path: string, read: () => Promise<T>): Promise<T | null> {
    try {
      return await read();
    } catch (error) {
      if (!(error instanceof Qcow2Error) || !PER_ENTRY_ERRORS.has(error.code)) throw error;
      this.skipped.push({ volume: this.volumeName, path, reason: error.message });
      return null;
    }
  }

  private report(side: 'added' | 'removed', entry: GuestFileEntry): void {
    this.differences.push(
      side === 'added'
        ? { path: entry.path, change: 'added', kind: entry.kind, sizeAfter: entry.size }
        : { path: entry.path, change: 'removed', kind: entry.kind, sizeBefore: entry.size },
    );
  }

  private async compareEntries(entryBefore: GuestFileEntry, entryAfter: GuestFileEntry, inSameFolder: boolean): Promise<void> {
    if (entryBefore.kind !== entryAfter.kind) {
      this.differences.push(changed(entryBefore, entryAfter, ['kind']));
      // A folder that became a file (or the reverse) takes its entries with it.
      if (entryBefore.kind === 'directory') {
        this.foldersKnown++;
        await this.wholeTree('removed', entryBefore.path);
      }
      if (entryAfter.kind === 'directory') {
        this.foldersKnown++;
        await this.wholeTree('added', entryAfter.path);
      }
      return;
    }
    // Permissions alone (a chmod) change neither size nor time: where the filesystem keeps them, compared too.
    const modeChanged = entryBefore.permissions !== undefined && entryAfter.permissions !== undefined && entryBefore.permissions !== entryAfter.permissions;
    if (entryAfter.kind === 'directory') {
      if (modeChanged) this.differences.push(changed(entryBefore, entryAfter, ['mode']));
      if (this.metAgain(entryAfter.path, `${entryBefore.folderId ?? entryBefore.path}|${entryAfter.folderId ?? entryAfter.path}`, entryBefore.folderId !== undefined && entryAfter.folderId !== undefined)) return;
      this.foldersKnown++;
      await this.compareFolder(entryAfter.path, entryBefore.mtimeMs !== null && entryBefore.mtimeMs === entryAfter.mtimeMs && entryBefore.size === entryAfter.size);
      return;
    }
    const reasons: Reason[] = [];
    if (entryBefore.size !== entryAfter.size) reasons.push('size');
    if (entryBefore.mtimeMs !== entryAfter.mtimeMs) reasons.push('mtime');
    if (entryAfter.kind === 'symlink' && entryBefore.target !== entryAfter.target) reasons.push('target');
    if (modeChanged && entryAfter.kind !== 'symlink') reasons.push('mode');
    if (reasons.length === 0 && entryAfter.kind === 'file' && entryAfter.size > 0 && (await this.orSkip(entryAfter.path, () => this.contentDiffers(entryAfter.path, entryAfter.size, inSameFolder))) === true) {
      reasons.push('content');
    }
    if (reasons.length > 0) this.differences.push(changed(entryBefore, entryAfter, reasons));
  }

  /**
   * Whether a file of equal size and time holds other bytes. Where its folder's entries are the same
   * (same inode), bytes outside the changed ranges are the same bytes in both states, so the later
   * state's extents suffice; otherwise the name may lead to another inode, whose extents must match too.
   */
  private async contentDiffers(path: string, size: number, sameInode: boolean): Promise<boolean> {
    if (this.contentCheck === 'none') return false;
    if (this.contentCheck === 'changed-ranges') {
      const extentsAfter = await this.after.extents(path);
      if (extentsAfter !== null && !this.changed.intersectsAny(extentsAfter)) {
        if (sameInode) return false;
        const extentsBefore = await this.before.extents(path);
        if (extentsBefore !== null && sameExtents(extentsBefore, extentsAfter)) return false;
      }
    }
    return this.bytesDiffer(path, size);
  }

  private async bytesDiffer(path: string, size: number): Promise<boolean> {
    const chunk = Math.min(size, COMPARE_CHUNK_BYTES);
    const bufferBefore = new Uint8Array(chunk);
    const bufferAfter = new Uint8Array(chunk);
    for (let offset = 0; offset < size; offset += chunk) {
      this.job.throwIfCancelled();
      const [readBefore, readAfter] = [await this.before.read(path, bufferBefore, offset), await this.after.read(path, bufferAfter, offset)];
      if (readBefore !== readAfter) return true;
      if (readBefore === 0) return false;
      if (!bytesEqual(bufferBefore.subarray(0, readBefore), bufferAfter.subarray(0, readAfter))) return true;
      if (readBefore < chunk) return false;
    }
    return false;
  }
}

function changed(entryBefore: GuestFileEntry, entryAfter: GuestFileEntry, reasons: Reason[]): GuestFileDifference {
  return { path: entryAfter.path, change: 'changed', kind: entryAfter.kind, sizeBefore: entryBefore.size, sizeAfter: entryAfter.size, reasons };
}

function sameExtents(a: readonly ByteRange[], b: readonly ByteRange[]): boolean {
  return a.length === b.length && a.every((range, index) => range.offset === b[index]!.offset && range.length === b[index]!.length);
}

/**
 * The entries sorted by name, each name once: where a damaged folder names one twice, the later
 * entry stands (as a map by name would keep it).
 */
function byNameOnce(entries: readonly GuestFileEntry[]): GuestFileEntry[] {
  const sorted = entries.toSorted((a, b) => byCodePoint(a.name, b.name));
  const once: GuestFileEntry[] = [];
  for (const entry of sorted) {
    if (once.length > 0 && once[once.length - 1]!.name === entry.name) once[once.length - 1] = entry;
    else once.push(entry);
  }
  return once;
}

/** Names in a stable order that does not depend on the locale. */
function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}


/**
 * files-diff between two states of one disk, opened through `open` (files/ cannot reach the
 * mapping tables' diff in snapshots/: the caller passes it in as `changedRanges`). Both states are
 * closed again whatever happens.
 */
export async function diffStatesByName(
  open: (state: string) => Promise<StateFiles>,
  from: string,
  to: string,
  changedRanges: () => readonly ByteRange[],
  job: JobContext = silentJob,
): Promise<GuestFilesDiff> {
  const ranges = changedRanges();
  const before = await open(from);
  try {
    const after = await open(to);
    try {
      return await diffStateFiles(before, after, { from, to, changedRanges: ranges, job });
    } finally {
      await after.close();
    }
  } finally {
    await before.close();
  }
}
