/**
 * A compressed L2 entry names whole 512-byte sectors: compressedEntrySize says what an entry
 * written by encodeCompressedL2 reads back as, which is the key the rewrite's early comparison
 * records and its final comparison looks up (rewrite/early-verify.ts, verify.ts).
 */
import { describe, expect, it } from 'vitest';
import { compressedEntrySize, decodeL2, encodeCompressedL2, type L2Format } from '../../../src/shared/qcow2/format/entries.ts';

describe('compressed L2 entries', () => {
  it.each([
    { clusterBits: 9, extendedL2: false },
    { clusterBits: 16, extendedL2: false },
    { clusterBits: 16, extendedL2: true },
    { clusterBits: 21, extendedL2: false },
  ])('read back with the stored size compressedEntrySize gives (cluster bits $clusterBits, extended L2 $extendedL2)', ({ clusterBits, extendedL2 }) => {
    const format: L2Format = { clusterBits, extendedL2 };
    const clusterBytes = 2 ** clusterBits;
    const bytes = new Uint8Array(16);
    const view = new DataView(bytes.buffer);
    const offsets = [0, 1, 511, 512, 513, 4095, 65536 + 300, 3 * 2 ** 32 + 17];
    for (const hostOffset of offsets) {
      for (const length of [1, 2, 511, 512, 513, clusterBytes - 1]) {
        if (length >= clusterBytes) continue;
        encodeCompressedL2(view, 0, format, hostOffset, length);
        const entry = decodeL2(view, 0, format);
        expect(entry.kind).toBe('compressed');
        expect(entry.hostOffset).toBe(hostOffset);
        expect(entry.compressedSize, `${length} bytes at ${hostOffset}`).toBe(compressedEntrySize(hostOffset, length));
        // It covers the data, and ends on a sector boundary.
        expect(entry.compressedSize).toBeGreaterThanOrEqual(length);
        expect((hostOffset + entry.compressedSize) % 512).toBe(0);
      }
    }
  });
});
