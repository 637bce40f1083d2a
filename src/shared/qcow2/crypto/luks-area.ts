/**
 * Reading and writing a qcow2 image's LUKS area through its BlockFile: a bounded reader for the
 * LUKS header and key material (offsets relative to the area, as the LUKS header counts them),
 * and the writes a key-slot change produces, applied in order with the flushes that keep a crash
 * from leaving a header that points at material not yet on disk.
 */
import { Qcow2Error } from '../errors.ts';
import { hex } from '../format/bytes.ts';
import type { CryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import type { BlockFile } from '../io/block-file.ts';

/** Exactly `length` bytes at `offsetInArea`; callers ask only for lengths a parsed header bounds. */
export type LuksAreaReader = (offsetInArea: number, length: number) => Uint8Array;

/** One write into the LUKS area; when `flushAfter`, it must be durable before the next write starts. */
export interface LuksAreaWrite {
  offsetInArea: number;
  bytes: Uint8Array;
  flushAfter: boolean;
}

export function luksAreaReader(file: BlockFile, area: CryptoHeaderExtension): LuksAreaReader {
  return (offsetInArea, length) => {
    checkInside(area, offsetInArea, length);
    const bytes = new Uint8Array(length);
    if (file.read(bytes, area.offset + offsetInArea) < length) {
      throw new Qcow2Error('TRUNCATED', `The LUKS area at ${hex(area.offset)} is cut short: the image is truncated`);
    }
    return bytes;
  };
}

/** Applies a key-slot change's writes in order. A generator's buffer may be reused for its next write, so each is written before the next is drawn. */
export function applyLuksAreaWrites(file: BlockFile, area: CryptoHeaderExtension, writes: Iterable<LuksAreaWrite>): void {
  for (const write of writes) {
    checkInside(area, write.offsetInArea, write.bytes.length);
    file.write(write.bytes, area.offset + write.offsetInArea);
    if (write.flushAfter) file.flush();
  }
}

function checkInside(area: CryptoHeaderExtension, offsetInArea: number, length: number): void {
  if (!Number.isSafeInteger(offsetInArea) || offsetInArea < 0 || length < 0 || offsetInArea + length > area.length) {
    throw new Qcow2Error('INVALID_ARGUMENT', `Bytes ${offsetInArea}–${offsetInArea + length} are outside the ${area.length}-byte LUKS area`);
  }
}
