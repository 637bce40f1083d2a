/**
 * The up-front validation of an in-place change (issue 21): before its first write, every
 * reference a change may follow — the refcount table and its blocks, the active and every
 * snapshot's L1 and L2 tables, the clusters they name — must be aligned, inside the file, play one
 * role only, and have a stored refcount at least the number of references to it. Allocation takes
 * refcount 0 to mean free, a drop below the true count frees a cluster still in use, and an
 * unaligned or out-of-range offset would reach refcount arithmetic as a fractional or unreachable
 * cluster: any of these refuses the change with CORRUPT before anything is written. A leak (a
 * stored refcount above the count) is harmless and allowed, as QEMU allows it.
 */
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned } from '../format/bytes.ts';
import { parseCryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import { decodeL2, plainL2HostOffset, type L2Format } from '../format/entries.ts';
import { isAllZero } from '../format/zeroes.ts';
import { EXT_CRYPTO_HEADER, findExtension, type Header } from '../format/header.ts';
import { INCOMPAT_DATA_FILE } from '../format/limits.ts';
import type { SnapshotEntry } from '../format/snapshot-table.ts';
import { ClusterCounts } from './cluster-counts.ts';
import type { Refcounts } from './refcounts.ts';
import type { TableCache } from './table-cache.ts';

/** An L1 table as the image holds it. */
interface L1Like {
  offset: number;
  size: number;
  bytes: Uint8Array;
  view: DataView;
}

/** What the validation reads of an open image (Qcow2Image, without importing it). */
export interface ChangeSubject {
  readonly clusterBytes: number;
  readonly l2Format: L2Format;
  readonly l2EntryBytes: number;
  readonly l2Entries: number;
  readonly l1: L1Like;
  readonly snapshots: readonly SnapshotEntry[];
  readonly snapshotTableBytes: number;
  readonly header: Header;
  readonly refcounts: Refcounts;
  readonly l2Cache: TableCache;
  readonly file: { size(): number };
  l2OffsetAt(l1: L1Like, l1Index: number): number;
  loadSnapshotL1(snapshot: SnapshotEntry): L1Like;
}

export const REPAIR_ADVICE = 'the image is damaged and was not changed: check and repair it first (cowbell check -r all, or Check in the app); what a repair cannot fix, a rescue copies around (cowbell convert --rescue, or Save What Can Be Read… in the app)';

const HEADER = 1;
const REFCOUNT_TABLE = 2;
const REFCOUNT_BLOCK = 3;
const SNAPSHOT_TABLE = 4;
/** Other metadata the header names: the LUKS area (header and key material). */
const OTHER = 8;
const L1 = 5;
const L2 = 6;
const DATA = 7;
/** The current state's L1 table, for an in-place change: written in place, so no snapshot may share it. */
const ACTIVE_L1 = 9;
const ROLE_WORDS = ['', 'the header', 'the refcount table', 'a refcount block', 'the snapshot table', 'an L1 table', 'an L2 table', 'guest data', 'the LUKS area', "the current state's L1 table"];
/** Roles several references may share: an L1 table (two snapshots), an L2 table or data (snapshots). */
const SHARABLE = new Set([L1, L2, DATA]);

function refuse(problem: string): never {
  throw new Qcow2Error('CORRUPT', `${problem}; ${REPAIR_ADVICE}`);
}

/** Damage no repair fixes, with what to do instead said in the message: never given the repair advice. */
const notRepairable = new WeakSet<Qcow2Error>();

function refuseUnrepairable(message: string): never {
  const error = new Qcow2Error('CORRUPT', message);
  notRepairable.add(error);
  throw error;
}

const ROLE_BITS = 4;

/** The expected refcount of every referenced cluster, and what each is used as. */
class References {
  /** Per cluster: the references to it and what it is used as, packed as `count << ROLE_BITS | role`. */
  private readonly tally = new ClusterCounts();
  private readonly fileClusters: number;
  private readonly clusterBytes: number;
  private highest = 0;

  constructor(fileBytes: number, clusterBytes: number) {
    this.clusterBytes = clusterBytes;
    this.fileClusters = Math.ceil(fileBytes / clusterBytes);
  }

  /**
   * One reference to the clusters of [offset, offset + bytes), in `role`. `what` names the
   * reference in a refusal; a function where building the name for every entry would cost more
   * than the check (a table's thousands of entries).
   */
  add(offset: number, bytes: number, role: number, what: string | (() => string), times = 1): void {
    const name = (): string => (typeof what === 'string' ? what : what());
    if (!isAligned(offset, this.clusterBytes) && role !== DATA) refuse(`${name()} at ${hex(offset)} is not cluster-aligned`);
    const first = Math.floor(offset / this.clusterBytes);
    const end = Math.ceil((offset + Math.max(bytes, 1)) / this.clusterBytes);
    if (end > this.fileClusters) refuse(`${name()} at ${hex(offset)} lies past the end of the file`);
    for (let cluster = first; cluster < end; cluster++) {
      const value = this.tally.get(cluster);
      const had = value & ((1 << ROLE_BITS) - 1);
      if (value !== 0 && (had === ACTIVE_L1 || role === ACTIVE_L1) && (had === L1 || role === L1)) {
        // QEMU refuses such a write too ("overlaps with inactive L1 table"); check -r all gives the snapshot a copy of its own (check/shared-l1.ts).
        refuse(`${name()} at ${hex(offset)} is also the current state's L1 table, which a change rewrites in place (the snapshot would change with it)`);
      }
      if (value !== 0 && (had !== role || !SHARABLE.has(role))) refuse(`${name()} at ${hex(offset)} overlaps ${ROLE_WORDS[had] ?? 'metadata'}`);
      // Counts saturate at 2^28 - 1, past what a shared cluster ever needs.
      const count = Math.min((value >>> ROLE_BITS) + times, 2 ** 28 - 1);
      if (count > this.highest) this.highest = count;
      this.tally.set(cluster, ((count << ROLE_BITS) | role) >>> 0);
    }
  }

  /**
   * `times` references to one cluster of guest data, named by its L2 entry: add() for the one
   * case met once per allocated cluster, without building a name unless it refuses.
   */
  addData(cluster: number, times: number, l2Offset: number, slot: number): void {
    const offset = cluster * this.clusterBytes;
    if (cluster >= this.fileClusters) refuse(`${l2EntryName(l2Offset, slot)} at ${hex(offset)} lies past the end of the file`);
    const value = this.tally.get(cluster);
    const had = value & ((1 << ROLE_BITS) - 1);
    if (value !== 0 && had !== DATA) refuse(`${l2EntryName(l2Offset, slot)} at ${hex(offset)} overlaps ${ROLE_WORDS[had] ?? 'metadata'}`);
    const count = Math.min((value >>> ROLE_BITS) + times, 2 ** 28 - 1);
    if (count > this.highest) this.highest = count;
    this.tally.set(cluster, ((count << ROLE_BITS) | DATA) >>> 0);
  }

  /** Every referenced cluster and its reference count. */
  forEachCount(visit: (cluster: number, count: number) => void): void {
    this.tally.forEach((cluster, value) => visit(cluster, value >>> ROLE_BITS));
  }

  /** The most references any one cluster has. */
  highestCount(): number {
    return this.highest;
  }
}

/** Bytes of an L2 table tested for all-zero at once (a whole number of entries of either width). */
const ZERO_TEST_BYTES = 512;

/**
 * Walks one L2 table's entries once, counting each `times`: once per L1 entry that names the table.
 * A snapshot that shares a table with another state still holds a reference to each cluster in it
 * (QEMU raises them all when it takes the snapshot, and a copy-on-write of the table keeps them in
 * both copies), so a stored refcount below that count is a shortfall a change could free.
 */
function addL2Entries(image: ChangeSubject, l2Offset: number, bytes: Uint8Array, references: References, times: number): void {
  const externalData = (image.header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blockSlots = ZERO_TEST_BYTES / image.l2EntryBytes;
  const clusterBytes = image.clusterBytes;
  for (let slot = 0; slot < image.l2Entries; slot++) {
    const at = slot * image.l2EntryBytes;
    // Whole runs of unallocated entries are passed over with one native test.
    if (slot % blockSlots === 0 && isAllZero(bytes.subarray(at, at + ZERO_TEST_BYTES))) {
      slot += blockSlots - 1;
      continue;
    }
    // An all-zero entry is unallocated, with nothing to check: most of a sparse disk's table.
    if (view.getUint32(at) === 0 && view.getUint32(at + 4) === 0 && (!image.l2Format.extendedL2 || view.getUint32(at + 8) === 0 && view.getUint32(at + 12) === 0)) continue;
    // Most entries name one aligned data cluster and nothing else: counted without decoding them
    // (a first run of this loop, before the JIT, costs tens of milliseconds per 30,000 entries otherwise).
    const plain = plainL2HostOffset(view, at, image.l2Format);
    if (plain > 0 && plain % clusterBytes === 0) {
      if (!externalData) references.addData(plain / clusterBytes, times, l2Offset, slot);
      continue;
    }
    const entry = decodeL2(view, at, image.l2Format);
    const what = (): string => l2EntryName(l2Offset, slot);
    if (entry.reservedBitsSet) refuse(`${what()} has reserved bits set`);
    // QEMU refuses to read it ("Zero cluster entry found in pre-v3 image"): a change, or a copy, would keep an entry no QEMU reads.
    if (entry.kind === 'zero' && image.header.version === 2) {
      refuseUnrepairable(`${what()} has the zero flag, which a compat 0.10 (version 2) image cannot have (QEMU refuses to read it); the image was not changed. Upgraded to compat 1.1, where the flag is valid, it reads as zeros: qemu-img amend -o compat=1.1`);
    }
    if (entry.kind === 'compressed') {
      references.add(entry.hostOffset, entry.compressedSize, DATA, () => `${what()} (compressed data)`, times);
      continue;
    }
    if (image.l2Format.extendedL2) {
      // No repair (Cowbell's or qemu-img's) decides which of the two was meant: no advice to run one.
      if ((entry.allocMask & entry.zeroMask) !== 0) refuseUnrepairable(`${what()} marks a subcluster both allocated and zero; the image is damaged and was not changed. No repair can tell which was meant: copy what can be read with cowbell convert --rescue`);
      // In an external data file, guest cluster 0 lies at host offset 0 (allocated: its COPIED flag is set).
      if (entry.kind === 'unallocated' && entry.allocMask !== 0) refuse(`${what()} allocates subclusters in an unallocated cluster`);
    }
    if (entry.hostOffset === 0) continue;
    if (!isAligned(entry.hostOffset, image.clusterBytes)) refuse(`${what()} names an unaligned host offset ${hex(entry.hostOffset)}`);
    // Data in an external data file lies outside this file and has no refcounts (qcow2.txt).
    if (externalData) continue;
    references.add(entry.hostOffset, image.clusterBytes, DATA, what, times);
  }
}

function l2EntryName(l2Offset: number, slot: number): string {
  return `the L2 entry ${slot} of the table at ${hex(l2Offset)}`;
}

/** An L1 table and the L2 tables it names; `uses` counts the L1 entries naming each L2 table. */
function addL1(image: ChangeSubject, l1: L1Like, name: string, references: References, uses: Map<number, number>, role = L1): void {
  if (l1.size > 0) references.add(l1.offset, l1.size * 8, role, `${name}'s L1 table`);
  for (let index = 0; index < l1.size; index++) {
    const l2Offset = image.l2OffsetAt(l1, index);
    if (l2Offset === 0) continue;
    references.add(l2Offset, image.clusterBytes, L2, () => `the L2 table of ${name}'s L1 entry ${index}`);
    uses.set(l2Offset, (uses.get(l2Offset) ?? 0) + 1);
  }
}

/** `changingInPlace`: the current state's L1 table will be written where it is (a rewrite only reads it, and writes each state its own). */
function collectReferences(image: ChangeSubject, changingInPlace: boolean): References {
  const { refcounts, clusterBytes } = image;
  const references = new References(image.file.size(), clusterBytes);
  references.add(0, clusterBytes, HEADER, 'the header');
  references.add(refcounts.tableOffset, refcounts.tableClusters * clusterBytes, REFCOUNT_TABLE, 'the refcount table');
  for (let index = 0, used = refcounts.usedTableEntries(); index < used; index++) {
    const block = refcounts.blockOffsetIfValid(index);
    if (block === null) refuse(`refcount table entry ${index} is invalid (unaligned, reserved bits set or out of range)`);
    if (block !== 0) references.add(block, clusterBytes, REFCOUNT_BLOCK, `refcount block ${index}`);
  }
  if (image.header.snapshotCount > 0) references.add(image.header.snapshotsOffset, image.snapshotTableBytes, SNAPSHOT_TABLE, 'the snapshot table');
  // Allocation must never hand out the key material's clusters: they count as referenced too.
  const crypto = findExtension(image.header, EXT_CRYPTO_HEADER);
  if (crypto !== undefined) {
    const area = parseCryptoHeaderExtension(crypto.data, clusterBytes);
    references.add(area.offset, area.length, OTHER, 'the LUKS area');
  }
  const uses = new Map<number, number>();
  addL1(image, image.l1, 'the current state', references, uses, changingInPlace ? ACTIVE_L1 : L1);
  for (const snapshot of image.snapshots) addL1(image, image.loadSnapshotL1(snapshot), `snapshot ${snapshot.name}`, references, uses);
  // In file order, neighbours read together, without entering the cache: a walk of thousands of
  // tables (a disk with many snapshots) neither evicts what the change needs nor leaves a new
  // buffer behind per table.
  image.l2Cache.scan(uses.keys(), (l2Offset, bytes) => addL2Entries(image, l2Offset, bytes, references, uses.get(l2Offset) ?? 1));
  return references;
}

export interface ValidationOptions {
  /**
   * Compare the stored refcounts with the references (default). A rewrite, which writes new
   * refcounts from the references, only needs each count to fit the refcount width.
   */
  storedRefcounts?: boolean;
}

/**
 * Refuses with CORRUPT (and the advice to repair) unless the metadata is sound enough to change
 * in place; reads only.
 */
export function refuseUnsoundMetadata(image: ChangeSubject, options: ValidationOptions = {}): void {
  try {
    const references = collectReferences(image, options.storedRefcounts !== false);
    const checkStored = options.storedRefcounts !== false;
    // Without stored refcounts to compare, only a count past the width needs finding a cluster for.
    if (!checkStored && references.highestCount() <= image.refcounts.max) return;
    references.forEachCount((cluster, count) => {
      const plural = count === 1 ? '' : 's';
      if (count > image.refcounts.max) refuse(`cluster ${cluster} is referenced ${count} time${plural}, more than this image's refcounts can count (${image.refcounts.max})`);
      if (!checkStored) return;
      const stored = image.refcounts.get(cluster);
      if (stored < count) refuse(`cluster ${cluster} is referenced ${count} time${plural} but its refcount is ${stored}`);
    });
  } catch (error) {
    // What the tables' own readers refuse (a bad L1 entry, a snapshot's L1 past the end) refuses the change the same way.
    if (error instanceof Qcow2Error && (error.code === 'CORRUPT' || error.code === 'TRUNCATED') && !error.message.endsWith(REPAIR_ADVICE) && !notRepairable.has(error)) refuse(error.message);
    throw error;
  }
}
