/**
 * Plain data the engine returns to its callers (CLI, workers, IPC). No Node imports here: the
 * renderer type-checks against this file too. Key names follow `qemu-img ... --output=json`
 * where qemu-img has the same datum.
 */

/** One internal snapshot as `qemu-img info --output=json` lists it. */
export interface SnapshotInfo {
  id: string;
  name: string;
  'vm-state-size': number;
  'date-sec': number;
  'date-nsec': number;
  'vm-clock-sec': number;
  'vm-clock-nsec': number;
  icount?: number;
  /** Cowbell's own: the snapshot's note (Cowbell's record in its extra data), when it has one. */
  note?: string;
}

export interface Qcow2SpecificInfo {
  compat: '0.10' | '1.1';
  'compression-type': 'zlib' | 'zstd';
  /** compat 1.1 (qcow2 v3) only, as in qemu-img info: v2 has none of these three. */
  'lazy-refcounts'?: boolean;
  /** Persistent dirty bitmaps, where the image keeps some (v3, the autoclear bit set), as qemu-img info lists them. */
  bitmaps?: { flags: ('in-use' | 'auto')[]; name: string; granularity: number }[];
  'refcount-bits': number;
  corrupt?: boolean;
  'extended-l2'?: boolean;
  'data-file'?: string;
  /** Whether the external data file alone reads as the guest disk; present when the image uses one (incompatible bit 2). */
  'data-file-raw'?: boolean;
  encrypt?: EncryptInfo;
}

/** One LUKS key slot as qemu-img info lists it (iters and stripes only for an active slot). */
export interface LuksSlotInfo {
  active: boolean;
  iters?: number;
  /** Where the slot's key material starts, in bytes from the start of the LUKS area. */
  'key-offset': number;
  stripes?: number;
}

/** `format-specific.data.encrypt`, with qemu-img info's keys; LUKS details are absent where the header cannot be read. */
export interface EncryptInfo {
  format: 'luks' | 'aes';
  'ivgen-alg'?: string;
  'hash-alg'?: string;
  /** e.g. aes-256 */
  'cipher-alg'?: string;
  uuid?: string;
  /** ESSIV's hash; absent for other IV generators. */
  'ivgen-hash-alg'?: string;
  'cipher-mode'?: string;
  slots?: LuksSlotInfo[];
  /** In bytes from the start of the LUKS area. */
  'payload-offset'?: number;
  'master-key-iters'?: number;
}

export interface ImageInfo {
  filename: string;
  format: 'qcow2';
  'virtual-size': number;
  'actual-size': number;
  'cluster-size': number;
  encrypted?: boolean;
  'dirty-flag': boolean;
  'backing-filename'?: string;
  'full-backing-filename'?: string;
  'backing-filename-format'?: string;
  snapshots?: SnapshotInfo[];
  'format-specific': { type: 'qcow2'; data: Qcow2SpecificInfo };
  /** Cowbell's own: the image could only be opened read-only, and why. */
  'read-only-reason'?: string;
  /** Cowbell's own: another program (a running VM, qemu-nbd) is writing the image; what is read may be mid-change. */
  'in-use'?: boolean;
  /**
   * Cowbell's own, for an encrypted image: guest bytes stored unencrypted, in compressed clusters
   * (QEMU writes those as plaintext), counted over every state; `cowbell compact` encrypts them
   * (`cowbell encrypt` on an old AES disk, which compact does not take).
   */
  'unencrypted-bytes'?: number;
  /** Cowbell's own: the compressed clusters behind 'unencrypted-bytes'. */
  'unencrypted-clusters'?: number;
}

/** One run of `qemu-img map --output=json`. */
export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  compressed: boolean;
  offset?: number;
}

export interface CheckResult {
  filename: string;
  format: 'qcow2';
  'check-errors': number;
  'image-end-offset'?: number;
  corruptions?: number;
  leaks?: number;
  'corruptions-fixed'?: number;
  'leaks-fixed'?: number;
  'allocated-clusters'?: number;
  'total-clusters'?: number;
  'fragmented-clusters'?: number;
  'compressed-clusters'?: number;
  /**
   * Cowbell's own, for an encrypted image: guest bytes stored unencrypted in compressed clusters
   * (QEMU writes them as plaintext), over every state. A warning, not a corruption.
   */
  'unencrypted-bytes'?: number;
  /**
   * Cowbell's own, after a repair: what it discarded because it was broken beyond repair (as
   * qemu-img's repair discards it, without saying so). Absent when nothing was lost.
   */
  lost?: RepairLoss[];
  /** Human-readable findings, one per problem, in the order found. */
  messages: string[];
}

/** Something a repair discarded: a whole snapshot, or a range of a snapshot's disk. */
export interface RepairLoss {
  /** 'snapshot': the snapshot was removed; 'range': that part of the snapshot's disk now reads as zeros (or from the backing file). */
  what: 'snapshot' | 'range';
  /** The snapshot's id and name; null where the broken table entry did not say. */
  'snapshot-id': string | null;
  'snapshot-name': string | null;
  /** For 'range': where on the snapshot's disk, in bytes. */
  'guest-offset'?: number;
  length?: number;
  /** Why it could not be kept, in a few words. */
  reason: string;
}

/**
 * The longest snapshot note, in UTF-8 bytes: with the rest of Cowbell's record it stays well inside
 * the 1024 bytes of extra data QEMU accepts per snapshot (format/cowbell-record.ts). Here so the
 * IPC contract and the renderer check the same bound.
 */
export const MAX_SNAPSHOT_NOTE_BYTES = 512;

/**
 * The 'read-only-reason' of a disk that keeps persistent dirty bitmaps: no change in place (it would
 * leave them stale), but a rewrite into a new file may leave them behind when the user agrees.
 */
export const BITMAPS_READ_ONLY_REASON = 'it has persistent dirty bitmaps (used by incremental backups) that Cowbell cannot keep up to date';

/** A snapshot in Cowbell's tree view (issue: snapshots as a tree). */
export interface SnapshotNode {
  id: string;
  name: string;
  parentId: string | null;
  parentInferred: boolean;
  /** Why the parent was inferred, when it was. */
  parentReason?: string;
  date: string;
  vmClock: number;
  vmStateSize: number;
  /** The disk's size at this snapshot (a snapshot keeps its own size across a resize); the engine always sets it. */
  diskSize?: number;
  /** Null while not counted: the quick tree (snapshot table alone) leaves them to the mapping pass. */
  exclusiveBytes: number | null;
  sharedBytes: number | null;
  /** The quick tree only: a placeholder parent (the likeliest) until the mapping pass infers it. */
  parentPending?: true;
  /** The user's description, kept in Cowbell's record in the snapshot's extra data; absent when there is none. */
  note?: string;
}

export interface SnapshotTree {
  snapshots: SnapshotNode[];
  currentParentId: string | null;
  currentParentInferred: boolean;
  /** Why the current state's parent was inferred, when it was. */
  currentParentReason?: string;
  /** The quick tree only: the current state's parent is a placeholder until the mapping pass decides. */
  currentParentPending?: true;
  /** The current state's own bytes (what a revert discards) and the bytes it shares; null while not counted (the quick tree). */
  current: { exclusiveBytes: number | null; sharedBytes: number | null };
}

export interface UsageReport {
  virtualSize: number;
  fileSize: number;
  /** What the file takes on its file system (its allocated blocks): less than fileSize where it has holes. Absent where unknown. */
  bytesOnDisk?: number;
  allocatedBytes: number;
  /**
   * Of the allocated data clusters, those lying in holes of the file: mapped but never written (a
   * disk made with preallocation=metadata maps its whole size so). They read zeros and take no
   * space on disk; no state counts them among its own or shared bytes. Absent where there are none
   * (or the holes cannot be known).
   */
  unwrittenBytes?: number;
  metadataBytes: number;
  leakedBytes: number;
  current: { exclusiveBytes: number; sharedBytes: number };
  snapshots: { id: string; name: string; exclusiveBytes: number; sharedBytes: number }[];
  /**
   * Set where the image was not closed cleanly (lazy refcounts, the dirty bit): the figures come
   * from refcounts that may be stale, so they may be wrong until a check with repair.
   */
  staleRefcounts?: true;
}

export interface DiffResult {
  ranges: { offset: number; length: number }[];
  bytes: number;
}

/**
 * The allocation map the UI draws (issue 11): the guest disk cut into `cellCount` cells of
 * `cellBytes` (a whole number of clusters; the last cell may be shorter), and for each cell the
 * guest bytes in each state. Per cell the five counts add up to the cell's length.
 */
export interface AllocationMap {
  virtualSize: number;
  clusterSize: number;
  cellBytes: number;
  cellCount: number;
  /** Bytes stored in the image's own clusters. */
  data: number[];
  /** Bytes marked as zeros (zero clusters and subclusters). */
  zero: number[];
  /** Bytes in compressed clusters. */
  compressed: number[];
  /** Bytes the image does not allocate and no backing file provides: they read as zeros. */
  unallocated: number[];
  /** Bytes the image does not allocate that come from a layer of the backing chain. */
  backing: number[];
}

/** Why a guest range could not be read by a rescue copy (`convert --rescue`). */
export const UNREADABLE_REASONS = [
  /** An L1 entry with reserved bits set: its L2 table cannot be trusted. */
  'L1_RESERVED_BITS',
  'L2_UNALIGNED',
  'L2_OUT_OF_FILE',
  /** An L2 table on the header, an L1 table, the refcount table or blocks, or the snapshot table. */
  'L2_OVERLAPS_METADATA',
  'L2_RESERVED_BITS',
  'CLUSTER_UNALIGNED',
  'CLUSTER_OUT_OF_FILE',
  /** A data cluster on metadata (tables, the header): what it holds is not the guest's. */
  'CLUSTER_OVERLAPS_METADATA',
  /** Extended L2: a subcluster both allocated and zero, or allocated without a host cluster (the whole entry is lost, as in QEMU). */
  'L2_BITMAP_INVALID',
  'COMPRESSED_CORRUPT',
  /** The file could not be read there (EIO). */
  'READ_ERROR',
  /** Any other inconsistency met while reading. */
  'CORRUPT',
] as const;

export type UnreadableReason = (typeof UNREADABLE_REASONS)[number];

/** At most this many unreadable ranges cross to the page (plain code: the worker chunk imports it, not the contract's zod). */
export const MAX_REPORTED_RANGES = 1000;

/** A guest range a rescue copy wrote as zeros, and why. */
export interface UnreadableRange {
  start: number;
  length: number;
  reason: UnreadableReason;
  /** In words, with the offsets involved (and which backing file, when it is not the image itself). */
  detail: string;
}

/** Why a file of a backing chain cannot be shown: the chain stops at it. */
export interface ChainProblem {
  kind: 'missing' | 'loop' | 'too-long' | 'unreadable';
  message: string;
}

/** One file of a disk's backing chain, the disk itself first. Sizes are null where the file cannot be read. */
export interface ChainFile {
  /** The path the file is opened at (a relative name resolved against the folder of the file naming it). */
  path: string;
  /** The name as the file above records it (for the disk itself, the path given). */
  name: string;
  format: 'qcow2' | 'raw' | null;
  /** The format the file above records for it, if any. */
  declaredFormat: string | null;
  virtualSize: number | null;
  /** Length of the file, and the bytes the host file system stores for it (holes excluded). */
  fileSize: number | null;
  allocatedBytes: number | null;
  encrypted: boolean;
  snapshots: { id: string; name: string; 'date-sec': number; 'vm-state-size': number }[];
  problem: ChainProblem | null;
}

/** A disk's backing chain, top (the disk) to bottom; `complete` is false when a file is missing, unreadable or loops. */
export interface BackingChain {
  files: ChainFile[];
  complete: boolean;
}

/** Allocated guest data one state holds past a proposed new end (a shrink). */
export interface DataPastEnd {
  /** 'current' is the disk as it is now; a snapshot keeps its own size and data whatever the disk's size. */
  state: 'current' | 'snapshot';
  /** The snapshot's id and name; null for the current state. */
  id: string | null;
  name: string | null;
  /** The state's own disk size. */
  diskSize: number;
  /** Bytes of allocated guest data between the new end and the state's own end. */
  bytes: number;
  /** True for a snapshot: a resize never changes what a snapshot holds. */
  kept: boolean;
}

/** A finished rewrite (compress, compact, encrypt, decrypt): the file before and after, and what the new one holds. */
/** The compressed data of every state, each cluster once: what a rewrite that uncompresses (Encrypt…) stores plainly. */
export interface CompressedData {
  clusters: number;
  /** Bytes the file holds for them now (sector-rounded, as the descriptors give them). */
  storedBytes: number;
  /** Guest bytes they hold, one cluster each: their size once uncompressed. */
  guestBytes: number;
  /** Whether the current state reads any of them. */
  inCurrent: boolean;
  /** The snapshots that read any of them. */
  inSnapshots: number;
}

export interface RewriteSummary {
  /** File sizes before (the source) and after (the new image). */
  beforeBytes: number;
  afterBytes: number;
  snapshots: number;
  storedClusters: number;
  compressedClusters: number;
  zeroClusters: number;
  /** Every state of the new disk was compared with the old before it replaced it. */
  verified: boolean;
  /** The new image's encryption. */
  encryption: 'luks' | 'none';
  /** The disk went from qcow2 version 2 to 3 (compat 0.10 to 1.1) on the way. */
  upgradedToVersion3: boolean;
}

/** What resizing to `newSize` would do, asked before it starts (reads metadata only). */
export interface ResizePreview {
  currentSize: number;
  /** The new size as it will be (the request, checked). */
  newSize: number;
  direction: 'grow' | 'shrink' | 'same';
  /** The active L1 table has to grow (it is moved to a larger one). */
  l1Grows: boolean;
  /** For a shrink: every state with data past the new end (empty when there is none). */
  pastEnd: DataPastEnd[];
}

export interface ResizeResult {
  previousSize: number;
  newSize: number;
  l1Grown: boolean;
  /** Bytes of the current state's allocated data past the new end that a shrink dropped. */
  discardedBytes: number;
}

/**
 * Files inside a state (issue 22). A path inside a state is POSIX-style from "/". A disk with a
 * partition table shows its volumes as the root's folders, named by partition number ("/1",
 * "/2", …); a disk that is one filesystem without a table is its root itself.
 */
export type GuestFileKind = 'file' | 'directory' | 'symlink' | 'other';

export type GuestFilesystemKind = 'ext' | 'fat' | 'ntfs' | 'xfs' | 'btrfs';

/** One entry of a folder inside a state, as `cowbell ls --json` prints it. */
export interface GuestFileEntry {
  name: string;
  /** Full path inside the state, e.g. "/1/etc/hostname". */
  path: string;
  kind: GuestFileKind;
  /** Bytes of content (a symlink: the target's length; a folder: 0). */
  size: number;
  /** Last modification, milliseconds since the epoch (UTC), or null where the filesystem keeps none. */
  mtimeMs: number | null;
  /** A symlink's target. */
  target?: string;
  /** Its permission bits (0o7777: with setuid, setgid and sticky) where the filesystem keeps them (ext); a copy out keeps them (not setuid/setgid). */
  permissions?: number;
  /**
   * A folder's identity in its state (its volume and the filesystem's own number for it), the same
   * under every name that leads to it: a walk meets one folder twice only in a damaged filesystem
   * (a folder inside itself, or linked from two places).
   */
  folderId?: string;
  /**
   * Why the entry's own record (its inode) cannot be read, where the filesystem is damaged there:
   * the folder lists it by name only (kind 'other', no size or time), as the kernel lists a folder
   * whose entry it cannot stat, rather than hiding every other entry.
   */
  damaged?: string;
}

/** One volume (partition, or the whole disk) of a state and what is on it. */
export interface GuestVolumeInfo {
  /** Its folder name at the root ("1", "2", …), or "" for a whole-disk filesystem. */
  name: string;
  /** Byte offset of the volume in the guest disk, and its length. */
  offset: number;
  length: number;
  /** Partition table it comes from. */
  table: 'mbr' | 'gpt' | 'none';
  /** The partition's type as the table names it (MBR type byte as "0x83", GPT type GUID), when there is one. */
  partitionType?: string;
  /** The filesystem found on it, or null when none Cowbell reads (swap, LVM, unknown, empty). */
  filesystem: GuestFilesystemKind | null;
  /** The filesystem's label, when it has one. */
  label?: string;
  /** Why a volume that looks like a known filesystem cannot be read (its bytes are damaged, a feature is unsupported). */
  problem?: string;
  /** What to keep in mind though it reads: an NTFS volume Windows had mounted (not shut down cleanly) may miss its latest changes. */
  caution?: string;
  /** An LVM logical volume: its group and name (the volume's name is device-mapper's, vg-lv). */
  logicalVolume?: { group: string; name: string };
  /** Where a volume in several pieces (an LVM logical volume) lies: its guest byte ranges, in order. */
  segments?: { offset: number; length: number }[];
  /** An LVM physical volume (the partition itself holds no filesystem; its logical volumes are listed beside it): its group. */
  physicalVolumeOf?: string;
  /** What a volume that holds no filesystem Cowbell reads holds instead, where its type or signature says. */
  holds?: VolumeContent;
  /** A LUKS-encrypted volume (holds 'luks'): its header, and whether a passphrase given opened it. */
  encryption?: GuestEncryption;
  /** A volume found inside an unlocked encrypted volume: that volume's name (its own offset and segments are guest bytes all the same). */
  encryptedIn?: string;
}

/** What the header of an encrypted guest volume says, read without any passphrase. */
export interface GuestEncryption {
  format: 'luks1' | 'luks2';
  /** The header's UUID: the key a passphrase is given for (the same in every state of the disk unless reformatted). */
  uuid: string;
  label?: string;
  /** "aes-256-xts-plain64". */
  cipher: string;
  /** Encryption sector size of the data (512, or up to 4096 in LUKS2). */
  sectorBytes: number;
  /** Whether a passphrase given opened it: its contents are then listed as the volume named `luks-<uuid>`. */
  unlocked: boolean;
  /** Why it stays locked: a passphrase given opened no key slot, or the header cannot be read or is of a kind Cowbell does not open. */
  problem?: string;
  /** The problem's code (BAD_PASSPHRASE, FILESYSTEM_CORRUPT, FILESYSTEM_UNSUPPORTED). */
  problemCode?: string;
}

/** What a volume holds that is no filesystem Cowbell reads (files/volume-content.ts tells). */
export type VolumeContent = 'swap' | 'luks' | 'bitlocker' | 'exfat' | 'linux-raid' | 'iso9660' | 'bios-boot' | 'microsoft-reserved';

/** How the app and messages name what a volume holds. */
export const VOLUME_CONTENT_NAMES: Record<VolumeContent, string> = {
  swap: 'swap space',
  luks: 'a LUKS-encrypted volume (its files are read once it is unlocked with its passphrase)',
  bitlocker: 'a BitLocker-encrypted volume (unlocked only inside Windows)',
  exfat: 'an exFAT filesystem, which Cowbell does not read',
  'linux-raid': 'a member of a Linux software RAID, which Cowbell does not assemble',
  iso9660: 'an ISO 9660 (CD/DVD) filesystem, which Cowbell does not read',
  'bios-boot': 'a BIOS boot partition (boot loader code, no files)',
  'microsoft-reserved': 'a Microsoft reserved partition (no files)',
};


export type GuestFileChange = 'added' | 'removed' | 'changed';

/** One difference between two states' files, as `cowbell files-diff --json` prints it. */
export interface GuestFileDifference {
  path: string;
  change: GuestFileChange;
  kind: GuestFileKind;
  /** Size in the first state (absent when added) and the second (absent when removed). */
  sizeBefore?: number;
  sizeAfter?: number;
  /** What differs for a changed entry: its size, its modification time, its content (seen in the changed guest ranges), its kind or target. */
  reasons?: ('size' | 'mtime' | 'content' | 'kind' | 'target' | 'mode')[];
}

export interface GuestFilesDiff {
  from: string;
  to: string;
  differences: GuestFileDifference[];
  /** Bytes of file content involved: added + removed + changed files' sizes in the later state. */
  bytes: number;
  /**
   * What could not be compared and why: whole volumes, or (with `path`) a folder or file inside one
   * that the guest encrypted or damaged; the rest of the volume is compared.
   */
  skipped: { volume: string; path?: string; reason: string }[];
}
