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
}

export interface Qcow2SpecificInfo {
  compat: '0.10' | '1.1';
  'compression-type': 'zlib' | 'zstd';
  /** compat 1.1 (qcow2 v3) only, as in qemu-img info: v2 has none of these three. */
  'lazy-refcounts'?: boolean;
  'refcount-bits': number;
  corrupt?: boolean;
  'extended-l2'?: boolean;
  'data-file'?: string;
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
   * (QEMU writes those as plaintext), counted over every state; `cowbell compact` encrypts them.
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
  exclusiveBytes: number;
  sharedBytes: number;
}

export interface SnapshotTree {
  snapshots: SnapshotNode[];
  currentParentId: string | null;
  currentParentInferred: boolean;
  /** Why the current state's parent was inferred, when it was. */
  currentParentReason?: string;
  /** The current state's own bytes (what a revert discards) and the bytes it shares. */
  current: { exclusiveBytes: number; sharedBytes: number };
}

export interface UsageReport {
  virtualSize: number;
  fileSize: number;
  allocatedBytes: number;
  metadataBytes: number;
  leakedBytes: number;
  current: { exclusiveBytes: number; sharedBytes: number };
  snapshots: { id: string; name: string; exclusiveBytes: number; sharedBytes: number }[];
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
