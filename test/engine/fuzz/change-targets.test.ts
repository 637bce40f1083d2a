/** The fuzz oracle's one allowance for a failed change: autoclear bits cleared, nothing else. */
import { describe, expect, it } from 'vitest';
import { onlyAutoclearCleared } from './change-targets.ts';

function header(version: number, autoclear: bigint, size = 4096): Uint8Array {
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, 0x514649fb);
  view.setUint32(4, version);
  if (version >= 3) view.setBigUint64(88, autoclear);
  bytes[200] = 7;
  return bytes;
}

describe('onlyAutoclearCleared', () => {
  it('accepts bits cleared from a v3 header', () => {
    expect(onlyAutoclearCleared(header(3, 0x15n), header(3, 0n))).toBe(true);
    expect(onlyAutoclearCleared(header(3, 0x15n), header(3, 0x01n))).toBe(true);
  });

  it('refuses bits set, no change, a v2 image, or any other byte changed', () => {
    expect(onlyAutoclearCleared(header(3, 0x01n), header(3, 0x03n))).toBe(false);
    expect(onlyAutoclearCleared(header(3, 0x15n), header(3, 0x15n))).toBe(false);
    const v2 = header(2, 0n);
    const v2Changed = header(2, 0n);
    v2Changed[90] = 1;
    expect(onlyAutoclearCleared(v2Changed, v2)).toBe(false);
    const elsewhere = header(3, 0n);
    elsewhere[200] = 8;
    expect(onlyAutoclearCleared(header(3, 0x15n), elsewhere)).toBe(false);
    expect(onlyAutoclearCleared(header(3, 0x15n), header(3, 0n, 8192))).toBe(false);
  });
});
