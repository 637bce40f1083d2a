/**
 * For each data cluster of the source, the cluster of the new image it was found equal to (or is
 * queued to be compared with): one number per source cluster in a typed array. A Map would hold
 * at most 2^24 entries (V8's limit: a fully allocated 1 TiB disk of 64 KiB clusters) at several
 * times the memory.
 */
const NONE = -1;

export class ClusterPairs {
  private readonly outputs: Float64Array;
  private readonly clusterBytes: number;

  /** Room for every cluster of a source file of `sourceFileBytes`. */
  constructor(sourceFileBytes: number, clusterBytes: number) {
    this.clusterBytes = clusterBytes;
    this.outputs = new Float64Array(Math.ceil(sourceFileBytes / clusterBytes)).fill(NONE);
  }

  /** Whether the source cluster at `sourceHost` is paired with the output cluster at `outputHost`. */
  has(sourceHost: number, outputHost: number): boolean {
    return this.outputs[sourceHost / this.clusterBytes] === outputHost;
  }

  /** Pairs them (a cluster past the file's end, which a sound image never names, is not remembered: it is compared each time). */
  set(sourceHost: number, outputHost: number): void {
    const index = sourceHost / this.clusterBytes;
    if (index < this.outputs.length) this.outputs[index] = outputHost;
  }
}
