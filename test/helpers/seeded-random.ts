import { createCipheriv, createHash } from 'node:crypto';

/**
 * Deterministic test data: the same seed gives the same numbers (mulberry32) and bytes (an
 * AES-CTR keystream keyed by the seed, fast enough for megabytes) on every run.
 */
export class SeededRandom {
  private blocks = 0;
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let value = this.state;
    value = Math.imul(value ^ (value >>> 15), value | 1);
    value ^= value + Math.imul(value ^ (value >>> 7), value | 61);
    return ((value ^ (value >>> 14)) >>> 0) / 0x1_0000_0000;
  }

  /** An integer in [min, max). */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min));
  }

  bytes(length: number): Uint8Array {
    const key = createHash('sha256').update(`${this.state}:${this.blocks++}`).digest().subarray(0, 16);
    const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    const bytes = new Uint8Array(cipher.update(new Uint8Array(length)));
    this.next();
    return bytes;
  }
}

/** Bytes that deflate well but are not one repeated byte: text lines with a counter. */
export function compressibleBytes(length: number, salt: number): Uint8Array {
  const bytes = new Uint8Array(length);
  const encoder = new TextEncoder();
  let position = 0;
  for (let line = 0; position < length; line++) {
    const text = encoder.encode(`cowbell ${salt} line ${line} more cowbell\n`);
    bytes.set(text.subarray(0, Math.min(text.length, length - position)), position);
    position += text.length;
  }
  return bytes;
}
