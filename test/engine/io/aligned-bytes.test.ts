import { describe, expect, it } from 'vitest';
import { alignedBytes, alignedSharedBytes } from '../../../src/shared/qcow2/io/aligned-bytes.ts';

describe('aligned I/O buffers', () => {
  it('are zeroed buffers of exactly the length asked for, whole pages behind them', () => {
    for (const length of [1, 4096, 65536, 65537, 4 * 1024 * 1024]) {
      const bytes = alignedBytes(length);
      expect(bytes.length).toBe(length);
      expect(bytes.byteOffset).toBe(0);
      expect(bytes.every((byte) => byte === 0)).toBe(true);
      expect(bytes.buffer.byteLength % 65536).toBe(0);
    }
  });

  it('the shared kind is a SharedArrayBuffer another thread can write', () => {
    const bytes = alignedSharedBytes(3 * 65536);
    expect(bytes.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(bytes.length).toBe(3 * 65536);
    const copy = structuredClone(bytes);
    copy[5] = 9;
    expect(bytes[5]).toBe(9);
  });
});
