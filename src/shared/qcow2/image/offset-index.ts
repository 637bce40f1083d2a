/**
 * Byte offsets (whole numbers below 2^53) numbered 0, 1, 2… in the order they are first added: an
 * open-addressing hash table in typed arrays. A rewrite keeps one entry per compressed cluster
 * (their data starts at any byte, so they cannot be numbered by cluster as ClusterPairs numbers
 * plain ones); a Map would stop at 2^24 entries (V8's limit, reached by 8 GiB of compressed data
 * in 512-byte clusters) and takes several times the memory of these arrays.
 */
const MISSING = -1;
/** A slot holding no offset. */
const FREE = 0;
const FIRST_CAPACITY = 1024;
const TWO_32 = 2 ** 32;

export class OffsetIndex {
  /** Per slot: FREE, or the number of the offset held there plus one. */
  private slots: Uint32Array;
  /** Per number: its offset. */
  private offsets = new Float64Array(FIRST_CAPACITY / 2);
  private mask: number;
  private size = 0;

  constructor() {
    this.slots = new Uint32Array(FIRST_CAPACITY);
    this.mask = FIRST_CAPACITY - 1;
  }

  /** How many distinct offsets were added. */
  get count(): number {
    return this.size;
  }

  /** The offset numbered `number`. */
  offsetAt(number: number): number {
    return number < this.size ? (this.offsets[number] ?? MISSING) : MISSING;
  }

  /** The number of `offset`, or -1 when it was never added. */
  numberOf(offset: number): number {
    for (let slot = this.home(offset); ; slot = (slot + 1) & this.mask) {
      const held = this.slots[slot] ?? FREE;
      if (held === FREE) return MISSING;
      if (this.offsets[held - 1] === offset) return held - 1;
    }
  }

  /** The number of `offset`, given the next free one when it is new (then equal to count - 1). */
  add(offset: number): number {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`not a byte offset: ${offset}`);
    // At most three quarters full: probes stay short.
    if (4 * (this.size + 1) > 3 * this.slots.length) this.rehash(2 * this.slots.length);
    for (let slot = this.home(offset); ; slot = (slot + 1) & this.mask) {
      const held = this.slots[slot] ?? FREE;
      if (held === FREE) {
        const number = this.size++;
        if (number >= this.offsets.length) this.offsets = growFloat64(this.offsets, number, MISSING);
        this.offsets[number] = offset;
        this.slots[slot] = number + 1;
        return number;
      }
      if (this.offsets[held - 1] === offset) return held - 1;
    }
  }

  /** A slot from the offset's bits: its low and high 32-bit words mixed (offsets of compressed data share their low bits often). */
  private home(offset: number): number {
    const low = offset >>> 0;
    const high = Math.floor(offset / TWO_32);
    let hash = Math.imul(low ^ Math.imul(high, 0x9e3779b1), 0x85ebca6b);
    hash ^= hash >>> 15;
    hash = Math.imul(hash, 0xc2b2ae35);
    hash ^= hash >>> 13;
    return hash & this.mask;
  }

  private rehash(capacity: number): void {
    this.slots = new Uint32Array(capacity);
    this.mask = capacity - 1;
    for (let number = 0; number < this.size; number++) {
      let slot = this.home(this.offsets[number] ?? MISSING);
      while ((this.slots[slot] ?? FREE) !== FREE) slot = (slot + 1) & this.mask;
      this.slots[slot] = number + 1;
    }
  }
}

/** A Uint32Array column that grows to hold index `index` (doubling, its values kept). */
export function growUint32(column: Uint32Array<ArrayBuffer>, index: number): Uint32Array<ArrayBuffer> {
  if (index < column.length) return column;
  const grown = new Uint32Array(Math.max(2 * column.length, index + 1, 16));
  grown.set(column);
  return grown;
}

/** A Float64Array column that grows to hold index `index`, new entries set to `fill`. */
export function growFloat64(column: Float64Array<ArrayBuffer>, index: number, fill: number): Float64Array<ArrayBuffer> {
  if (index < column.length) return column;
  const grown = new Float64Array(Math.max(2 * column.length, index + 1, 16)).fill(fill);
  grown.set(column);
  return grown;
}
