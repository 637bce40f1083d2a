/**
 * For each data cluster of the source, what of the new image it was found equal to (or is queued
 * to be compared with): an output cluster, compressed data (its offset and length), or a form with
 * no data (OUTPUT_ZERO, OUTPUT_UNALLOCATED). One number and one tag per source cluster in typed
 * arrays: a Map or Set would hold at most 2^24 entries (V8's limit: a fully allocated 1 TiB disk
 * of 64 KiB clusters) at several times the memory, and string keys far more.
 */
import { growFloat64, growUint32, OffsetIndex } from '../image/offset-index.ts';

const NONE = -1;
/** The output entry is a zero cluster. */
export const OUTPUT_ZERO = -2;
/** The output entry is unallocated (or its L2 table is absent). */
export const OUTPUT_UNALLOCATED = -3;

export class ClusterPairs {
  private readonly outputs: Float64Array;
  private readonly tags: Uint32Array;
  readonly clusterBytes: number;

  /** Room for every cluster of a source file of `sourceFileBytes`. */
  constructor(sourceFileBytes: number, clusterBytes: number) {
    this.clusterBytes = clusterBytes;
    const clusters = Math.ceil(sourceFileBytes / clusterBytes);
    this.outputs = new Float64Array(clusters).fill(NONE);
    this.tags = new Uint32Array(clusters);
  }

  /** Whether the source cluster at `sourceHost` is paired with `output` (a host offset or OUTPUT_*) and `tag` (a compressed length; 0 for whole clusters). */
  has(sourceHost: number, output: number, tag = 0): boolean {
    const index = sourceHost / this.clusterBytes;
    return this.outputs[index] === output && this.tags[index] === tag;
  }

  /** Pairs them (a cluster past the file's end, which a sound image never names, is not remembered: it is compared each time). */
  set(sourceHost: number, output: number, tag = 0): void {
    const index = sourceHost / this.clusterBytes;
    if (index >= this.outputs.length || !Number.isInteger(index)) return;
    this.outputs[index] = output;
    this.tags[index] = tag;
  }
}

/**
 * The same for compressed source data, which starts at any byte: each source offset (with the
 * stored size its entry gives) and the output it was found equal to, in typed arrays through an
 * OffsetIndex.
 */
export class CompressedPairs {
  private readonly index = new OffsetIndex();
  private sourceSizes = new Uint32Array(0);
  private outputs = new Float64Array(0);
  private tags = new Uint32Array(0);

  has(sourceOffset: number, sourceSize: number, output: number, tag: number): boolean {
    const number = this.index.numberOf(sourceOffset);
    return number >= 0 && this.sourceSizes[number] === sourceSize && this.outputs[number] === output && this.tags[number] === tag;
  }

  set(sourceOffset: number, sourceSize: number, output: number, tag: number): void {
    const number = this.index.add(sourceOffset);
    this.sourceSizes = growUint32(this.sourceSizes, number);
    this.outputs = growFloat64(this.outputs, number, NONE);
    this.tags = growUint32(this.tags, number);
    this.sourceSizes[number] = sourceSize;
    this.outputs[number] = output;
    this.tags[number] = tag;
  }
}
