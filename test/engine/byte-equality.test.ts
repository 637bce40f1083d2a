/** The suite's byte-array equality (test/helpers/byte-equality.ts) still tells bytes apart, and is quick. */
import { describe, expect, it } from 'vitest';

describe('toEqual on byte arrays', () => {
  it('equal bytes are equal, whatever the view (Buffer, Uint8Array, a subarray), also inside objects', () => {
    const bytes = new Uint8Array(64).map((_, index) => index);
    expect(Buffer.from(bytes)).toEqual(bytes);
    expect(bytes.subarray(8, 16)).toEqual(new Uint8Array([8, 9, 10, 11, 12, 13, 14, 15]));
    expect({ data: [bytes] }).toEqual({ data: [new Uint8Array(bytes)] });
  });

  it('one byte different, one byte more, or an empty one against a full one: not equal', () => {
    const bytes = new Uint8Array(1 << 20).fill(7);
    const changed = new Uint8Array(bytes);
    changed[changed.length - 1] = 8;
    expect(changed).not.toEqual(bytes);
    expect(new Uint8Array([...bytes.subarray(0, 9), 0])).not.toEqual(bytes.subarray(0, 9));
    expect(new Uint8Array(0)).not.toEqual(new Uint8Array(1));
    expect({ data: changed }).not.toEqual({ data: bytes });
    expect(() => expect(changed).toEqual(bytes)).toThrow();
  });

  it('other values are compared as before: arrays of numbers are not bytes', () => {
    expect([1, 2, 3]).not.toEqual(new Uint8Array([1, 2, 3]));
    expect(new Uint16Array([1, 2])).not.toEqual(new Uint16Array([1, 3]));
  });
});
