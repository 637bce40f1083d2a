/**
 * How large a rewritten image will be, before it is written: an upper bound from the plan (every
 * distinct cluster stored as it would be at worst) and an expectation from a sample of clusters
 * spread over the file (how many are all zeros, how well the rest compress, and how many
 * compressed clusters the refcount width lets share a host cluster). Sizes are what the new file
 * takes of the disk: the writer leaves zeros inside clusters as holes.
 */
import { compressCluster, decompressCluster, type CompressionType } from '../codec/compression.ts';
import { alignUp } from '../format/bytes.ts';
import { isAllZero } from '../format/zeroes.ts';
import { compressedPackingLimit, SPARSE_BLOCK_BYTES } from '../image/host-space-writer.ts';
import type { Qcow2Image } from '../image/image.ts';
import { MARK_DATA, type RewritePlan } from './plan.ts';
import type { CompressionPolicy } from './write-image.ts';

export interface SizeEstimate {
  /** The new file can be no larger than this. */
  maxBytes: number;
  /** What it will most likely be. */
  expectedBytes: number;
  /** Clusters the expectation was drawn from. */
  sampledClusters: number;
}

const DEFAULT_SAMPLE = 64;

/** The copy's batch: 4 MiB of clusters (write-image.ts reads, compresses and writes that many at a time). */
export function defaultBatchClusters(image: Qcow2Image): number {
  return Math.max(1, Math.floor((4 * 1024 * 1024) / image.clusterBytes));
}

export interface EstimateOptions {
  policy: CompressionPolicy;
  compressionType: CompressionType;
  /** Clusters to sample (0: none, the bound is the expectation). */
  sampleSize?: number;
  batchClusters?: number;
  /** The new image's LUKS area (header and key material), 0 for a plain one. */
  luksAreaBytes?: number;
  /** The new image's qcow2 version (the source's by default): only version 3 has zero clusters. */
  version?: 2 | 3;
}

export function estimateOutputSize(image: Qcow2Image, plan: RewritePlan, options: EstimateOptions): SizeEstimate {
  const { policy, compressionType, sampleSize = DEFAULT_SAMPLE, batchClusters = defaultBatchClusters(image) } = options;
  const clusterBytes = image.clusterBytes;
  const metadata = metadataBytes(image, plan) + alignUp(options.luksAreaBytes ?? 0, clusterBytes);
  const compressedMax = policy === 'uncompress' || compressionType !== image.header.compressionType ? plan.compressedClusters * clusterBytes : plan.compressedBytes;
  // Compressed data is packed byte by byte; where whole clusters follow it, the rest of a cluster
  // stays unused: at most once per batch of the copy (write-image.ts) and once per group of tables.
  const batches = Math.ceil((plan.dataClusters + plan.compressedClusters) / batchClusters) + plan.l2Tables.length;
  const packingSlack = plan.compressedClusters > 0 || policy === 'compress' ? (batches + 2) * clusterBytes : 0;
  const maxBytes = metadata + plan.dataClusters * clusterBytes + compressedMax + packingSlack;
  const sample = sampleDataClusters(image, plan, sampleSize);
  if (sample.length === 0) return { maxBytes, expectedBytes: maxBytes, sampledClusters: 0 };
  let sampledBytes = 0;
  const zeroStays = image.header.backingFile !== null && (options.version ?? image.version) === 2;
  const packingLimit = compressedPackingLimit(image.refcounts.order);
  for (const content of sample) {
    if (isAllZero(content) && !zeroStays) continue;
    if (policy !== 'compress') sampledBytes += clusterBytes;
    else {
      const compressed = compressCluster(compressionType, content)?.length;
      sampledBytes += compressed === undefined ? clusterBytes : compressedCost(compressed, clusterBytes, packingLimit);
    }
  }
  const expectedData = Math.ceil((sampledBytes / sample.length) * plan.dataClusters);
  // Compressed sources stay as they are unless asked otherwise; then they count like the rest.
  const expectedCompressed = compressedMax === plan.compressedBytes ? plan.compressedBytes : Math.ceil((sampledBytes / sample.length) * plan.compressedClusters);
  return { maxBytes, expectedBytes: Math.min(maxBytes, metadata + expectedData + expectedCompressed), sampledClusters: sample.length };
}

/**
 * What a compressed cluster of `compressed` bytes takes of the disk. Packed byte after byte, it
 * takes its length — unless the refcount width lets fewer share a host cluster than would fill
 * it (the writer's packing limit: 1 with refcount_bits=1, 5 with 4), when the rest of each host
 * cluster is left unwritten: a hole, in 4 KiB blocks, where the file system has sparse files
 * (Windows' NTFS, as Node writes it, has not: there the whole cluster counts).
 */
function compressedCost(compressed: number, clusterBytes: number, packingLimit: number): number {
  if (packingLimit * compressed >= clusterBytes) return compressed;
  const written = packingLimit * compressed;
  const held = process.platform === 'win32' ? clusterBytes : Math.min(clusterBytes, alignUp(written, SPARSE_BLOCK_BYTES));
  return held / packingLimit;
}

/** Header, L1 and L2 tables, snapshot tables and refcount structures, generously. */
function metadataBytes(image: Qcow2Image, plan: RewritePlan): number {
  const clusterBytes = image.clusterBytes;
  let bytes = clusterBytes + plan.l2Tables.length * clusterBytes;
  for (const state of plan.states) bytes += alignUp(state.l1.size * 8, clusterBytes);
  bytes += alignUp(plan.states.length * 1200, clusterBytes);
  const clusters = Math.ceil(bytes / clusterBytes) + plan.dataClusters + plan.compressedClusters;
  const refcountBytes = Math.ceil((clusters * 2 ** image.refcounts.order) / 8);
  return bytes + 2 * alignUp(refcountBytes, clusterBytes) + 2 * clusterBytes;
}

/**
 * The guest bytes of up to `count` distinct clusters spread over the file (compressed ones
 * decompressed): one at a random place in each of `count` equal stretches of the data clusters,
 * so that the sample covers the whole file and no stride lines up with a pattern in the data.
 */
function sampleDataClusters(image: Qcow2Image, plan: RewritePlan, count: number): Uint8Array[] {
  const samples: Uint8Array[] = [];
  const picks = spreadPicks(plan.dataClusters, count);
  let rank = 0;
  for (let cluster = 0; cluster < plan.clusterMarks.length && samples.length < picks.length; cluster++) {
    if (((plan.clusterMarks[cluster] ?? 0) & MARK_DATA) === 0) continue;
    if (rank++ !== picks[samples.length]) continue;
    const content = new Uint8Array(image.clusterBytes);
    const read = image.file.read(content, cluster * image.clusterBytes);
    if (read < content.length) content.fill(0, read);
    // LUKS numbers sectors by host offset, which is all a sample knows (legacy AES would need the guest's).
    if (image.cipher?.kind === 'luks') image.cipher.decrypt(content, cluster * image.clusterBytes, 0);
    samples.push(content);
  }
  if (samples.length === 0) {
    for (const number of spreadPicks(plan.compressed.count, count)) {
      const stored = new Uint8Array(plan.compressed.sizeAt(number));
      const read = image.file.read(stored, plan.compressed.offsetAt(number));
      samples.push(decompressCluster(image.header.compressionType, stored.subarray(0, read), image.clusterBytes));
    }
  }
  return samples;
}

/**
 * `count` distinct numbers below `total` in increasing order (all of them when there are no more):
 * one from each of `count` equal stretches, at a place drawn from a fixed seed (the same image
 * gives the same estimate every time).
 */
export function spreadPicks(total: number, count: number): number[] {
  if (total <= count) return Array.from({ length: total }, (_, index) => index);
  const picks: number[] = [];
  let state = (total ^ 0x9e3779b9) >>> 0 || 1;
  for (let index = 0; index < count; index++) {
    const from = Math.floor((index * total) / count);
    const to = Math.floor(((index + 1) * total) / count);
    // xorshift32: cheap, and plenty for placing a sample.
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    picks.push(from + (state % (to - from)));
  }
  return picks;
}
