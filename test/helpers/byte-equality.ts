/**
 * Set up for every unit test file (vitest.config.mts): toEqual and its kin compare two byte arrays
 * (Uint8Array, Buffer) as memory. Vitest walks typed arrays one element at a time, a few µs a byte:
 * one toEqual of two 8 MiB disks took 31 s of a test's 60 s timeout.
 */
import { expect } from 'vitest';

function sameBytes(a: unknown, b: unknown): boolean | undefined {
  if (!(a instanceof Uint8Array) || !(b instanceof Uint8Array)) return undefined;
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

expect.addEqualityTesters([sameBytes]);
