/**
 * The distinct compressed clusters a rewrite's plan finds in every state: each one's stored size
 * and its references, numbered in the order the walk first meets them (OffsetIndex), in typed
 * arrays — a few bytes each, however many there are.
 */
import { growUint32, OffsetIndex } from '../image/offset-index.ts';

export class CompressedClusters {
  private readonly index = new OffsetIndex();
  private sizes = new Uint32Array(0);
  private references = new Uint32Array(0);

  get count(): number {
    return this.index.count;
  }

  /** The number of the compressed data at `offset`, or -1 when the plan has none there. */
  numberOf(offset: number): number {
    return this.index.numberOf(offset);
  }

  offsetAt(number: number): number {
    return this.index.offsetAt(number);
  }

  /** Bytes from the descriptor (sector-rounded, as QEMU stores them), as the first entry naming it gave them. */
  sizeAt(number: number): number {
    return this.sizes[number] ?? 0;
  }

  referencesAt(number: number): number {
    return this.references[number] ?? 0;
  }

  /** Counts `users` more references to the compressed data at `offset`; returns whether it is new (then `size` is its size). */
  add(offset: number, size: number, users: number): boolean {
    const known = this.index.count;
    const number = this.index.add(offset);
    if (number < known) {
      this.references[number] = (this.references[number] ?? 0) + users;
      return false;
    }
    this.sizes = growUint32(this.sizes, number);
    this.references = growUint32(this.references, number);
    this.sizes[number] = size;
    this.references[number] = users;
    return true;
  }
}
