/**
 * The runs a rewrite's copy hands to its early comparison (early-verify.ts) and that wait for room
 * in the shared ring: a first-in-first-out queue of fixed capacity kept in one Float64Array, so a
 * copy that queues a run per cluster (a compress, 512-byte clusters: millions of them) leaves no
 * object per run for the collector. When full, the oldest run is dropped: that run is then left to
 * the final comparison.
 */

/** What each queued run holds, by field number. */
export const RUN = {
  sourceHost: 0,
  /** A host offset, or below zero a form without data (OUTPUT_ZERO, OUTPUT_UNALLOCATED). */
  outputHost: 1,
  clusters: 2,
  /** A compressed run's stored size as its entry reads (one cluster), else 0. */
  tag: 3,
  /** Where its bytes in the new file end (0 for a form without data). */
  outputEnd: 4,
  /** For compressed data kept as the source stored it: the source entry's stored size (sourceHost is then that data's offset); else 0. */
  sourceSize: 5,
  /** For compressed data kept as stored: the bytes of its stream, the same on both sides. */
  streamBytes: 6,
} as const;
/** Numbers per run, here and in the shared ring, which holds runs in the same layout. */
export const RUN_FIELDS = 7;

type Field = (typeof RUN)[keyof typeof RUN];

export class RunQueue {
  private readonly runs: Float64Array;
  private readonly capacity: number;
  /** The oldest run's slot. */
  private first = 0;
  private count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.runs = new Float64Array(capacity * RUN_FIELDS);
  }

  get length(): number {
    return this.count;
  }

  /** Appends a run; a full queue drops its oldest first. */
  push(sourceHost: number, outputHost: number, clusters: number, tag: number, outputEnd: number, sourceSize = 0, streamBytes = 0): void {
    if (this.count === this.capacity) this.shift();
    const at = ((this.first + this.count) % this.capacity) * RUN_FIELDS;
    this.runs[at + RUN.sourceHost] = sourceHost;
    this.runs[at + RUN.outputHost] = outputHost;
    this.runs[at + RUN.clusters] = clusters;
    this.runs[at + RUN.tag] = tag;
    this.runs[at + RUN.outputEnd] = outputEnd;
    this.runs[at + RUN.sourceSize] = sourceSize;
    this.runs[at + RUN.streamBytes] = streamBytes;
    this.count++;
  }

  /** Copies the oldest run's fields into `target` from `at` (a slot of the shared ring). */
  copyOldest(target: Float64Array, at: number): void {
    const from = this.at(0);
    target.set(this.runs.subarray(from, from + RUN_FIELDS), at);
  }

  /** A field of the run `index` places from the oldest. */
  get(index: number, field: Field): number {
    return this.runs[this.at(index) + field] ?? 0;
  }

  set(index: number, field: Field, value: number): void {
    this.runs[this.at(index) + field] = value;
  }

  /** Forgets the oldest run. */
  shift(): void {
    if (this.count === 0) return;
    this.first = (this.first + 1) % this.capacity;
    this.count--;
  }

  private at(index: number): number {
    return ((this.first + index) % this.capacity) * RUN_FIELDS;
  }
}
