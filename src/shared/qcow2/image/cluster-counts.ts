/**
 * A count per host cluster of a file of any size (references to add, a tally of references and
 * roles): pages of typed arrays, each made when a cluster in it is first set, so a small file costs
 * one page and a huge one only the pages its clusters use. A Map stops at 2^24 entries (V8's
 * limit: a 1 TiB file of 64 KiB clusters, 8 GiB of 512-byte ones) and costs several times more.
 */
const PAGE_BITS = 16;
const PAGE_CLUSTERS = 2 ** PAGE_BITS;

export class ClusterCounts {
  /** By page number (cluster / PAGE_CLUSTERS); a Map, as the clusters of a file may lie far apart. */
  private readonly pages = new Map<number, Uint32Array>();
  /** The last page used: most runs of work stay in one page for a while. */
  private lastIndex = -1;
  private lastPage: Uint32Array | undefined;

  get(cluster: number): number {
    return this.page(Math.floor(cluster / PAGE_CLUSTERS))?.[cluster % PAGE_CLUSTERS] ?? 0;
  }

  /** Sets a cluster's count (a whole number below 2^32). */
  set(cluster: number, value: number): void {
    if (!Number.isSafeInteger(cluster) || cluster < 0) throw new RangeError(`not a cluster index: ${cluster}`);
    const pageIndex = Math.floor(cluster / PAGE_CLUSTERS);
    let page = this.page(pageIndex);
    if (page === undefined) {
      if (value === 0) return;
      page = new Uint32Array(PAGE_CLUSTERS);
      this.pages.set(pageIndex, page);
      this.lastIndex = pageIndex;
      this.lastPage = page;
    }
    page[cluster % PAGE_CLUSTERS] = value;
  }

  /** Adds `delta` to a cluster's count; returns the new count. */
  add(cluster: number, delta: number): number {
    const value = this.get(cluster) + delta;
    this.set(cluster, value);
    return value;
  }

  /**
   * Every cluster whose count is not 0, with its count, in ascending cluster order. A callback,
   * not a generator of pairs: a pass over a big tally's millions of clusters, or a first one before
   * the JIT has compiled the loop, takes several times less.
   */
  forEach(visit: (cluster: number, value: number) => void): void {
    for (const pageIndex of [...this.pages.keys()].sort((a, b) => a - b)) {
      const page = this.pages.get(pageIndex);
      if (page === undefined) continue;
      const first = pageIndex * PAGE_CLUSTERS;
      for (let slot = 0; slot < PAGE_CLUSTERS; slot++) {
        const value = page[slot] as number;
        if (value !== 0) visit(first + slot, value);
      }
    }
  }

  private page(pageIndex: number): Uint32Array | undefined {
    if (pageIndex !== this.lastIndex) {
      this.lastIndex = pageIndex;
      this.lastPage = this.pages.get(pageIndex);
    }
    return this.lastPage;
  }
}
