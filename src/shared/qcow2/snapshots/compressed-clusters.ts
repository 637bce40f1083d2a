/**
 * Who holds the host clusters of compressed data. Several compressed guest clusters share one host
 * cluster (and one may run over into the next), each entry counting one reference to every host
 * cluster it touches, per state that names it (as QEMU counts). So a host cluster is freed with a
 * state exactly when that state's entries are all its references: only whole host clusters count,
 * each once per state — never the entries' compressed lengths, which overlap in shared sectors.
 *
 * One number per file cluster and kind, made on the first compressed entry met (a disk with none
 * pays nothing): what the mapping pass needs to stay exact whichever tables or states share them.
 */
import type { RefcountLookup } from './table-usage.ts';

/** `owner` of a host cluster several states touch. */
const SEVERAL = 0xffffffff;

export class CompressedClusters {
  private readonly clusterBytes: number;
  /** 0: no state touches it; SEVERAL; else the one state's index + 1. */
  private readonly owner: Uint32Array;
  /** References from every state's entries together. */
  private readonly references: Uint32Array;
  /** The state (index + 1) that touched it last, to count each host cluster once per state. */
  private readonly lastState: Uint32Array;
  private readonly touchedByState: Float64Array;

  constructor(fileClusters: number, states: number, clusterBytes: number) {
    this.clusterBytes = clusterBytes;
    this.owner = new Uint32Array(fileClusters);
    this.references = new Uint32Array(fileClusters);
    this.lastState = new Uint32Array(fileClusters);
    this.touchedByState = new Float64Array(states);
  }

  /** `state`'s entries (of one L2 table it names) touch `cluster` `references` times. Clusters past the file's end are not counted. */
  add(state: number, cluster: number, references: number): void {
    if (cluster >= this.owner.length) return;
    const tag = state + 1;
    const owner = this.owner[cluster] ?? 0;
    if (owner === 0) this.owner[cluster] = tag;
    else if (owner !== tag) this.owner[cluster] = SEVERAL;
    this.references[cluster] = Math.min(SEVERAL, (this.references[cluster] ?? 0) + references);
    if (this.lastState[cluster] !== tag) {
      this.lastState[cluster] = tag;
      this.touchedByState[state] = (this.touchedByState[state] ?? 0) + 1;
    }
  }

  /**
   * Bytes per state: own, the host clusters only its entries reference (their refcount is all
   * theirs, so deleting the state frees them), and shared, the rest of those it touches.
   */
  totals(refcounts: RefcountLookup): { own: Float64Array; shared: Float64Array } {
    const states = this.touchedByState.length;
    const own = new Float64Array(states);
    for (let cluster = 0; cluster < this.owner.length; cluster++) {
      const owner = this.owner[cluster] ?? 0;
      if (owner === 0 || owner === SEVERAL) continue;
      if (refcounts.get(cluster) === this.references[cluster]) own[owner - 1] = (own[owner - 1] ?? 0) + this.clusterBytes;
    }
    const shared = new Float64Array(states);
    for (let state = 0; state < states; state++) shared[state] = (this.touchedByState[state] ?? 0) * this.clusterBytes - (own[state] ?? 0);
    return { own, shared };
  }
}
