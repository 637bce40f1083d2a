/**
 * The refcount every host cluster should have, counted from the references check finds, and
 * what each cluster is used as (to report metadata that overlaps other metadata or data).
 * Sized by the file's cluster count: the file size is a real bound, and a reference that lies a
 * cluster or more past the end of the file is refused (and reported) instead of counted.
 */
import { Qcow2Error } from '../errors.ts';
import type { CheckFindings } from './findings.ts';
import { maxRefcount } from '../format/entries.ts';

export const ROLE_HEADER = 1;
export const ROLE_REFCOUNT_TABLE = 2;
export const ROLE_REFCOUNT_BLOCK = 4;
export const ROLE_L1 = 8;
/** The snapshot table, the encryption header, the bitmap directory, bitmap tables and bitmap data. */
export const ROLE_OTHER_METADATA = 16;
export const ROLE_L2 = 32;
export const ROLE_DATA = 64;
const OVERLAP = 128;
/** Roles a cluster may legitimately play for several referrers: an L2 table or data shared with snapshots. */
const SHARABLE = ROLE_L2 | ROLE_DATA;

const ROLE_WORDS: [number, string][] = [
  [ROLE_HEADER, 'the header'],
  [ROLE_REFCOUNT_TABLE, 'the refcount table'],
  [ROLE_REFCOUNT_BLOCK, 'a refcount block'],
  [ROLE_L1, 'an L1 table'],
  [ROLE_OTHER_METADATA, 'other metadata (snapshot table, encryption header or bitmaps)'],
  [ROLE_L2, 'an L2 table'],
  [ROLE_DATA, 'guest data'],
];

/** Past-the-end clusters listed before a repair stops allocating past the end of the file at all. */
const MAX_LISTED_PAST_END = 65536;

/** QEMU refuses to check images of more than INT_MAX clusters; so do we. */
const MAX_CHECKED_CLUSTERS = 2 ** 31 - 2;

export class ExpectedRefcounts {
  readonly clusterBytes: number;
  readonly fileSize: number;
  /** Clusters the file holds; the last may be partial. */
  readonly fileClusters: number;
  /** The largest refcount the image can store. */
  readonly max: number;
  /** Counts go on past `max` (so that a shared cluster is never mistaken for an unshared one) up to what the array holds. */
  private readonly storeMax: number;
  /** End (byte) of the furthest reference refused for lying past the end of the file; 0 if none. */
  pastEndReferenceEnd = 0;
  /** The clusters past the end of the file that refused references name (null once too many to list). */
  pastEndClusters: Set<number> | null = new Set();
  private readonly counts: Uint8Array | Uint16Array | Uint32Array;
  private readonly roles: Uint8Array;

  constructor(fileSize: number, clusterBytes: number, refcountOrder: number) {
    this.clusterBytes = clusterBytes;
    this.fileSize = fileSize;
    this.fileClusters = Math.ceil(fileSize / clusterBytes);
    this.max = Math.min(maxRefcount(refcountOrder), 0xffff_ffff);
    // One slot past the file: QEMU accepts a reference that ends less than a cluster past the end.
    const length = this.fileClusters + 1;
    if (length > MAX_CHECKED_CLUSTERS) {
      throw new Qcow2Error('UNSUPPORTED_FEATURE', `The image file has ${this.fileClusters} clusters, more than a check can count (${MAX_CHECKED_CLUSTERS})`);
    }
    this.storeMax = refcountOrder <= 3 ? 0xff : refcountOrder === 4 ? 0xffff : 0xffff_ffff;
    try {
      this.counts = refcountOrder <= 3 ? new Uint8Array(length) : refcountOrder === 4 ? new Uint16Array(length) : new Uint32Array(length);
      this.roles = new Uint8Array(length);
    } catch (error) {
      throw new Qcow2Error('UNSUPPORTED_FEATURE', `Not enough memory to check an image of ${this.fileClusters} clusters`, { cause: error });
    }
  }

  get length(): number {
    return this.counts.length;
  }

  /** Clusters the comparison covers: the file's, plus the one past it if a reference reached into it. */
  get compareEnd(): number {
    return this.fileClusters + ((this.counts[this.fileClusters] ?? 0) > 0 ? 1 : 0);
  }

  /**
   * Counts `times` references to every cluster that [offset, offset + size) touches, as `role`.
   * Returns false (and reports a corruption) if the range lies a cluster or more past the end of
   * the file, as QEMU does; nothing is counted then.
   */
  add(offset: number, size: number, role: number, times: number, findings: CheckFindings): boolean {
    if (size <= 0) return true;
    const end = offset + size;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(end) || end - this.fileSize >= this.clusterBytes) {
      findings.corruption(
        `ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${offset.toString(16)} size 0x${size.toString(16)}`,
        times,
      );
      if (Number.isFinite(end)) this.pastEndReferenceEnd = Math.max(this.pastEndReferenceEnd, end);
      else this.pastEndReferenceEnd = Number.MAX_SAFE_INTEGER;
      this.notePastEnd(offset, end);
      return false;
    }
    const first = Math.floor(offset / this.clusterBytes);
    const last = Math.floor((end - 1) / this.clusterBytes);
    for (let cluster = first; cluster <= last; cluster++) {
      this.claim(cluster, role);
      const current = this.counts[cluster] ?? 0;
      const next = current + times;
      if (next > this.max && current <= this.max) findings.corruption(`ERROR: overflow cluster offset=0x${(cluster * this.clusterBytes).toString(16)}`);
      this.counts[cluster] = Math.min(next, this.storeMax);
    }
    return true;
  }

  /**
   * As `add` for one whole cluster the caller knows lies inside the file (the scan's common case:
   * an aligned data cluster), without the range checks.
   */
  addCluster(cluster: number, role: number, times: number, findings: CheckFindings): void {
    this.claim(cluster, role);
    const current = this.counts[cluster] ?? 0;
    const next = current + times;
    if (next > this.max && current <= this.max) findings.corruption(`ERROR: overflow cluster offset=0x${(cluster * this.clusterBytes).toString(16)}`);
    this.counts[cluster] = Math.min(next, this.storeMax);
  }

  private notePastEnd(offset: number, end: number): void {
    if (this.pastEndClusters === null) return;
    const first = Math.floor(offset / this.clusterBytes);
    const last = Math.floor((end - 1) / this.clusterBytes);
    if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last - first > 16 || this.pastEndClusters.size > MAX_LISTED_PAST_END) {
      this.pastEndClusters = null;
      return;
    }
    for (let cluster = first; cluster <= last; cluster++) this.pastEndClusters.add(cluster);
  }

  private claim(cluster: number, role: number): void {
    const previous = this.roles[cluster] ?? 0;
    const shared = (previous & ~OVERLAP) === role && (role & SHARABLE) !== 0;
    this.roles[cluster] = previous | role | (previous !== 0 && !shared ? OVERLAP : 0);
  }

  /** References found (may exceed what the image can store). */
  get(cluster: number): number {
    return this.counts[cluster] ?? 0;
  }

  /** The refcount the image should store: the references, or the largest it can hold. */
  target(cluster: number): number {
    return Math.min(this.counts[cluster] ?? 0, this.max);
  }

  /** Drops references (the old refcount structure, once a rebuilt one replaces it). */
  subtract(cluster: number, count: number, role: number): void {
    const current = this.counts[cluster] ?? 0;
    this.counts[cluster] = Math.max(0, current - count);
    if (cluster < this.roles.length) {
      const remaining = (this.roles[cluster] ?? 0) & ~role & ~OVERLAP;
      const several = (remaining & (remaining - 1)) !== 0;
      this.roles[cluster] = remaining | (several ? OVERLAP : 0);
    }
  }

  rolesOf(cluster: number): number {
    return (this.roles[cluster] ?? 0) & ~OVERLAP;
  }

  overlaps(cluster: number): boolean {
    return ((this.roles[cluster] ?? 0) & OVERLAP) !== 0;
  }

  describeRoles(cluster: number): string {
    const roles = this.rolesOf(cluster);
    const words = ROLE_WORDS.filter(([bit]) => (roles & bit) !== 0).map(([, word]) => word);
    if (words.length === 1) return `${words[0]} twice`;
    return words.join(' and ');
  }
}
