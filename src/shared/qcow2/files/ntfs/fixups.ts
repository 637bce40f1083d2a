/**
 * The update sequence (multi-sector protection) of MFT records ("FILE") and index blocks ("INDX"):
 * the last two bytes of every 512-byte stride hold the sequence number while on disk, and the real
 * bytes sit in the update sequence array. A mismatch means a torn or damaged structure.
 */
import { corrupt, LeBytes } from './bytes.ts';

/** NTFS protects every 512-byte stride, whatever the sector size. */
const FIXUP_STRIDE = 512;

/** Checks the magic and undoes the fixups in place. */
export function applyFixups(record: Uint8Array, magic: 'FILE' | 'INDX', what: string): void {
  const bytes = new LeBytes(record, what);
  if (bytes.ascii(0, 4) !== magic) throw corrupt(`${what} has no ${magic} signature`);
  const arrayOffset = bytes.u16(4);
  const arrayCount = bytes.u16(6);
  const strides = record.length / FIXUP_STRIDE;
  if (!Number.isInteger(strides) || arrayCount !== strides + 1) {
    throw corrupt(`${what}: update sequence of ${arrayCount} entries for ${record.length} bytes`);
  }
  if (arrayOffset < 8 || arrayOffset % 2 !== 0 || arrayOffset + arrayCount * 2 > FIXUP_STRIDE - 2) {
    throw corrupt(`${what}: update sequence array at ${arrayOffset} does not fit the first stride`);
  }
  const sequenceNumber = bytes.u16(arrayOffset);
  for (let stride = 0; stride < strides; stride++) {
    const tail = (stride + 1) * FIXUP_STRIDE - 2;
    if (bytes.u16(tail) !== sequenceNumber) throw corrupt(`${what}: update sequence mismatch in stride ${stride} (a torn write)`);
    record[tail] = bytes.u8(arrayOffset + 2 + stride * 2);
    record[tail + 1] = bytes.u8(arrayOffset + 3 + stride * 2);
  }
}
