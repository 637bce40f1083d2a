/**
 * The file allocation table: one entry per data cluster naming the next cluster of its chain.
 * Chains come back as runs of consecutive clusters. A walk is bounded by the count the caller
 * needs (a file's size, a folder's largest size) and never by the chain itself, and a chain that
 * visits a cluster twice (a loop, or one that joins itself) is refused, as is a next cluster
 * outside the volume, a free or bad cluster inside a chain, and a chain that ends too early.
 * The FAT is read in chunks kept in a small cache, so a FAT32 table of hundreds of MiB never
 * sits in memory.
 */
import { Qcow2Error } from '../../errors.ts';
import type { VolumeBytes } from '../filesystem.ts';
import type { FatGeometry } from './boot-sector.ts';

/** Clusters cluster … cluster + count − 1, in chain order. */
export interface ClusterRun {
  cluster: number;
  count: number;
}

const CHUNK_BYTES = 64 * 1024;
const MAX_CACHED_CHUNKS = 16;

const END_OF_CHAIN = { 12: 0xff8, 16: 0xfff8, 32: 0x0ffffff8 } as const;
const BAD_CLUSTER = { 12: 0xff7, 16: 0xfff7, 32: 0x0ffffff7 } as const;

export class FatTable {
  private readonly volume: VolumeBytes;
  private readonly geometry: FatGeometry;
  /** Bytes of the FAT that hold entries for clusters 0 … clusterCount + 1. */
  private readonly usedBytes: number;
  private readonly chunkBytes: number;
  private readonly chunks = new Map<number, Uint8Array>();

  constructor(volume: VolumeBytes, geometry: FatGeometry) {
    this.volume = volume;
    this.geometry = geometry;
    this.usedBytes = Math.ceil(((geometry.clusterCount + 2) * geometry.width) / 8);
    // FAT12 entries straddle byte boundaries; its whole table is a few KiB, so it is one chunk.
    this.chunkBytes = geometry.width === 12 ? this.usedBytes : CHUNK_BYTES;
  }

  private async chunk(index: number): Promise<Uint8Array> {
    const cached = this.chunks.get(index);
    if (cached !== undefined) {
      this.chunks.delete(index);
      this.chunks.set(index, cached);
      return cached;
    }
    const start = index * this.chunkBytes;
    const bytes = new Uint8Array(Math.min(this.chunkBytes, this.usedBytes - start));
    await this.volume.read(bytes, this.geometry.fatOffset + start);
    if (this.chunks.size >= MAX_CACHED_CHUNKS) {
      const oldest = this.chunks.keys().next().value;
      if (oldest !== undefined) this.chunks.delete(oldest);
    }
    this.chunks.set(index, bytes);
    return bytes;
  }

  /** The raw FAT entry of a cluster (2 … clusterCount + 1, checked by the caller). */
  async entry(cluster: number): Promise<number> {
    const { width } = this.geometry;
    const byteOffset = width === 12 ? Math.floor((cluster * 3) / 2) : (cluster * width) / 8;
    const chunk = await this.chunk(Math.floor(byteOffset / this.chunkBytes));
    const at = byteOffset % this.chunkBytes;
    const data = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (width === 32) return data.getUint32(at, true) & 0x0fffffff;
    const pair = data.getUint16(at, true);
    if (width === 16) return pair;
    return cluster % 2 === 0 ? pair & 0x0fff : pair >> 4;
  }

  isCluster(value: number): boolean {
    return value >= 2 && value <= this.geometry.clusterCount + 1;
  }

  /** The first `clusters` clusters of a file's chain; FILESYSTEM_CORRUPT if the chain is shorter or broken. */
  fileChain(first: number, clusters: number, what: string): Promise<ClusterRun[]> {
    return this.walk(first, clusters, true, what);
  }

  /** A whole chain of at most `maxClusters` clusters (a folder's); FILESYSTEM_CORRUPT if it is longer or broken. */
  wholeChain(first: number, maxClusters: number, what: string): Promise<ClusterRun[]> {
    return this.walk(first, maxClusters, false, what);
  }

  private async walk(first: number, limit: number, stopAtLimit: boolean, what: string): Promise<ClusterRun[]> {
    const { width, clusterCount } = this.geometry;
    const corrupt = (message: string): Qcow2Error => new Qcow2Error('FILESYSTEM_CORRUPT', `${what}: ${message}`);
    if (limit > clusterCount) throw corrupt(`needs ${limit} clusters, more than the volume's ${clusterCount}`);
    const runs: ClusterRun[] = [];
    if (limit === 0) return runs;
    if (!this.isCluster(first)) throw corrupt(`starts at cluster ${first}, outside clusters 2-${clusterCount + 1}`);
    let cluster = first;
    let walked = 0;
    for (;;) {
      const last = runs[runs.length - 1];
      if (last !== undefined && last.cluster + last.count === cluster) last.count++;
      else runs.push({ cluster, count: 1 });
      walked++;
      if (stopAtLimit && walked === limit) break;
      const next = await this.entry(cluster);
      if (next >= END_OF_CHAIN[width]) {
        if (stopAtLimit) throw corrupt(`its cluster chain ends after ${walked} of the ${limit} clusters its size needs`);
        break;
      }
      if (next === BAD_CLUSTER[width]) throw corrupt(`its cluster chain reaches a cluster marked bad after cluster ${cluster}`);
      if (next === 0) throw corrupt(`its cluster chain reaches a free cluster after cluster ${cluster}`);
      if (!this.isCluster(next)) throw corrupt(`cluster ${cluster} points to ${next}, outside clusters 2-${clusterCount + 1}`);
      if (walked === limit) throw corrupt(`its cluster chain is longer than ${limit} clusters (a loop, or more than a folder may hold)`);
      cluster = next;
    }
    refuseRepeats(runs, corrupt);
    return runs;
  }
}

/** A chain that names a cluster twice loops (or would read the same bytes twice). */
function refuseRepeats(runs: ClusterRun[], corrupt: (message: string) => Qcow2Error): void {
  if (runs.length < 2) return;
  const sorted = [...runs].sort((a, b) => a.cluster - b.cluster);
  for (let index = 1; index < sorted.length; index++) {
    const before = sorted[index - 1] as ClusterRun;
    const run = sorted[index] as ClusterRun;
    if (before.cluster + before.count > run.cluster) throw corrupt(`its cluster chain visits cluster ${run.cluster} twice (a loop)`);
  }
}
