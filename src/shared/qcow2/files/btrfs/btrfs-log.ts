/**
 * btrfs's log tree, as a mount replays it, kept in memory: the files a guest fsync'd since the last
 * transaction commit (a snapshot of a running Fedora guest has them) are in a log tree per
 * subvolume, under the log root tree the superblock points at. What replay does to the items the
 * reader uses (the kernel's tree-log.c, in effect):
 * - a logged inode's item replaces the committed one;
 * - a logged file's extents replace the committed ones over the bytes they cover, and a logged
 *   regular file loses the extents past its (logged) size;
 * - a folder's entries: those in its logged index ranges (DIR_LOG_INDEX) that the log does not
 *   hold again are gone, the logged ones (DIR_INDEX) are there (a name held by another inode
 *   before is taken over), and so are the names a logged inode's references (INODE_REF,
 *   INODE_EXTREF) give it; a name that inode had in that folder and its logged references no
 *   longer give is gone.
 * The log's other items (checksums, extended attributes, orphan fix-ups, DIR_ITEM's copies of the
 * index by name) change nothing a listing, a stat or a read shows.
 */
import { guestFileName } from '../linux-names.ts';
import { bigUint64, corrupt, uint16, uint64, type BtrfsKey } from './btrfs-bytes.ts';
import { DIR_INDEX, EXTENT_DATA, INODE_ITEM, parseFolderEntries, parseRootItem, ROOT_ITEM } from './btrfs-items.ts';
import { MAX_KEY, type LeafItem, type TreeReader, type TreeRoot } from './btrfs-tree.ts';

const TREE_LOG_OBJECTID = 2n ** 64n - 6n;
const INODE_REF = 12;
const INODE_EXTREF = 13;
const DIR_LOG_INDEX = 72;

/** A name an inode's logged reference gives it in a folder. */
export interface LoggedName {
  folder: bigint;
  index: bigint;
  name: string;
}

/** What one subvolume's log tree holds that replay changes in what is read. */
export interface SubvolumeLog {
  inodes: Map<bigint, Uint8Array>;
  /** EXTENT_DATA items by inode, in file order. */
  extents: Map<bigint, LeafItem[]>;
  /** Logged folder entries by folder: index → name and what it leads to. */
  entries: Map<bigint, Map<bigint, { name: string; location: BtrfsKey }>>;
  /** Logged index ranges by folder ([first, last], inclusive). */
  ranges: Map<bigint, [bigint, bigint][]>;
  /** Logged references by inode, and the folders they were logged for. */
  names: Map<bigint, LoggedName[]>;
}

/** The approximate bytes the logs hold (replay-memo.ts): items keep the tree blocks they were read from. */
export function btrfsLogBytes(logs: ReadonlyMap<bigint, SubvolumeLog>): number {
  const blocks = new Set<ArrayBufferLike>();
  let entries = 0;
  for (const log of logs.values()) {
    for (const inode of log.inodes.values()) blocks.add(inode.buffer);
    for (const items of log.extents.values()) for (const item of items) blocks.add(item.data.buffer);
    entries += log.inodes.size + log.extents.size + log.ranges.size + log.names.size;
    for (const folder of log.entries.values()) entries += folder.size;
  }
  let bytes = entries * 128;
  for (const block of blocks) bytes += block.byteLength;
  return bytes;
}

/** Every subvolume's log, by the subvolume's tree id; empty when the superblock names no log. */
export async function readBtrfsLog(trees: TreeReader, logRoot: TreeRoot): Promise<Map<bigint, SubvolumeLog>> {
  const logs = new Map<bigint, SubvolumeLog>();
  const roots = await trees.items(logRoot, { objectId: TREE_LOG_OBJECTID, type: ROOT_ITEM, offset: 0n }, { objectId: TREE_LOG_OBJECTID, type: ROOT_ITEM, offset: MAX_KEY.offset });
  for (const root of roots) {
    const subvolume = root.key.offset;
    const items = await trees.items(parseRootItem(root.data, subvolume), { objectId: 0n, type: 0, offset: 0n }, MAX_KEY);
    logs.set(subvolume, subvolumeLog(items));
  }
  return logs;
}

function subvolumeLog(items: readonly LeafItem[]): SubvolumeLog {
  const log: SubvolumeLog = { inodes: new Map(), extents: new Map(), entries: new Map(), ranges: new Map(), names: new Map() };
  for (const item of items) {
    const { objectId, type, offset } = item.key;
    if (type === INODE_ITEM) log.inodes.set(objectId, item.data);
    else if (type === EXTENT_DATA) pushTo(log.extents, objectId, item);
    else if (type === DIR_INDEX) {
      const entry = parseFolderEntries(item.data, objectId)[0];
      if (entry !== undefined) mapOf(log.entries, objectId).set(offset, entry);
    } else if (type === DIR_LOG_INDEX) {
      if (item.data.length < 8) throw corrupt(`folder ${objectId}'s logged range holds ${item.data.length} bytes`);
      // A range may run to the end of all indexes ((u64)-1).
      const last = bigUint64(item.data, 0);
      if (last < offset) throw corrupt(`folder ${objectId}'s logged range ends before it starts`);
      pushTo(log.ranges, objectId, [offset, last]);
    } else if (type === INODE_REF) for (const name of inodeRefs(item.data, offset)) pushTo(log.names, objectId, name);
    else if (type === INODE_EXTREF) for (const name of inodeExtRefs(item.data)) pushTo(log.names, objectId, name);
  }
  return log;
}

/** INODE_REF: (index, name length, name)… for the folder its key names. */
function inodeRefs(data: Uint8Array, folder: bigint): LoggedName[] {
  const names: LoggedName[] = [];
  for (let at = 0; at < data.length; ) {
    if (at + 10 > data.length) throw corrupt(`a logged reference in folder ${folder} ends inside its header`);
    const length = uint16(data, at + 8);
    if (length === 0 || at + 10 + length > data.length) throw corrupt(`a logged reference in folder ${folder} has a name of ${length} bytes`);
    names.push({ folder, index: BigInt(uint64(data, at, 'a reference index')), name: referenceName(data.subarray(at + 10, at + 10 + length), folder) });
    at += 10 + length;
  }
  return names;
}

/** INODE_EXTREF: (folder, index, name length, name)…, for names that do not fit the inode's INODE_REF. */
function inodeExtRefs(data: Uint8Array): LoggedName[] {
  const names: LoggedName[] = [];
  for (let at = 0; at < data.length; ) {
    if (at + 18 > data.length) throw corrupt('a logged extended reference ends inside its header');
    const length = uint16(data, at + 16);
    if (length === 0 || at + 18 + length > data.length) throw corrupt(`a logged extended reference has a name of ${length} bytes`);
    const folder = BigInt(uint64(data, at, 'a reference folder'));
    names.push({ folder, index: BigInt(uint64(data, at + 8, 'a reference index')), name: referenceName(data.subarray(at + 18, at + 18 + length), folder) });
    at += 18 + length;
  }
  return names;
}

/** A logged reference's name, refused where no folder entry could bear it ('/' or NUL in it). */
function referenceName(bytes: Uint8Array, folder: bigint): string {
  if (bytes.includes(0x2f) || bytes.includes(0)) throw corrupt(`a logged reference in folder ${folder} holds a name with '/' or NUL in it`);
  return guestFileName(bytes);
}

/**
 * A folder's entries after replay: `committed` (index → name and location, from its DIR_INDEX
 * items) with what `log` says of this folder applied.
 */
export function replayedFolder(committed: Map<bigint, { name: string; location: BtrfsKey }>, folder: bigint, log: SubvolumeLog): Map<bigint, { name: string; location: BtrfsKey }> {
  const logged = log.entries.get(folder);
  const ranges = log.ranges.get(folder) ?? [];
  const result = new Map(committed);
  // Entries in a logged range that the log does not hold again were removed before the fsync.
  for (const [index, entry] of committed) {
    const again = logged?.get(index);
    if (ranges.some(([first, last]) => index >= first && index <= last) && (again === undefined || again.name !== entry.name)) result.delete(index);
  }
  const add = (index: bigint, entry: { name: string; location: BtrfsKey }): void => {
    for (const [other, existing] of result) if (existing.name === entry.name && other !== index) result.delete(other);
    result.set(index, entry);
  };
  for (const [index, entry] of logged ?? []) add(index, entry);
  // Names the logged references give their inodes here; names those inodes had here and no longer have, gone.
  for (const [inode, names] of log.names) {
    // A subvolume's root folder refers to itself as its own parent, by "..": no entry of any folder.
    const here = names.filter((name) => name.folder === folder && inode !== folder && name.name !== '.' && name.name !== '..');
    if (here.length === 0) continue;
    for (const [index, entry] of result) {
      if (entry.location.type === INODE_ITEM && entry.location.objectId === inode && !here.some((name) => name.name === entry.name)) result.delete(index);
    }
    for (const name of here) {
      const present = [...result.values()].some((entry) => entry.name === name.name && entry.location.objectId === inode);
      if (!present) add(name.index, { name: name.name, location: { objectId: inode, type: INODE_ITEM, offset: 0n } });
    }
  }
  return result;
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list === undefined) map.set(key, [value]);
  else list.push(value);
}

function mapOf<K, V>(map: Map<K, Map<bigint, V>>, key: K): Map<bigint, V> {
  let inner = map.get(key);
  if (inner === undefined) {
    inner = new Map();
    map.set(key, inner);
  }
  return inner;
}

