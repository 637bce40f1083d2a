/**
 * The "full disk encryption header pointer" header extension (type 0x0537be77, qcow2.txt "Header
 * extensions"): where a LUKS image (crypt_method 2) keeps its LUKS area, as a big-endian u64 offset
 * and u64 length. QEMU allocates the area as ordinary clusters at create time; the length is the
 * LUKS payload offset (header plus key material), not rounded up to clusters.
 */
import { Qcow2Error } from '../errors.ts';
import { hex, isAligned, readU64Number, view, writeU64Number } from './bytes.ts';
import { MAX_HOST_OFFSET } from './limits.ts';
import { LUKS_PHDR_BYTES } from './luks-header.ts';

export const CRYPTO_HEADER_EXTENSION_BYTES = 16;
/**
 * QEMU's areas are 1–2 MiB (eight slots of 4000 stripes); 64 MiB holds eight slots at the parser's
 * largest stripes. A longer area is damage, and would make walks over its clusters unbounded.
 */
export const MAX_LUKS_AREA_BYTES = 64 * 1024 * 1024;

export interface CryptoHeaderExtension {
  /** Host offset of the LUKS area (cluster-aligned). */
  offset: number;
  /** Bytes of the area that belong to LUKS (the header and all key material). */
  length: number;
}

export function parseCryptoHeaderExtension(data: Uint8Array, clusterBytes: number): CryptoHeaderExtension {
  if (data.length !== CRYPTO_HEADER_EXTENSION_BYTES) {
    throw new Qcow2Error('CORRUPT', `The encryption header extension is ${data.length} bytes long; it must be ${CRYPTO_HEADER_EXTENSION_BYTES}`);
  }
  const fields = view(data);
  const offset = readU64Number(fields, 0, 'The LUKS area offset');
  const length = readU64Number(fields, 8, 'The LUKS area length');
  if (offset === 0 || !isAligned(offset, clusterBytes)) {
    throw new Qcow2Error('CORRUPT', `The LUKS area offset ${hex(offset)} is not a cluster boundary past the header`);
  }
  if (length < LUKS_PHDR_BYTES) throw new Qcow2Error('CORRUPT', `The LUKS area is ${length} bytes long, too short for a LUKS header`);
  if (length > MAX_LUKS_AREA_BYTES) throw new Qcow2Error('CORRUPT', `The LUKS area is ${length} bytes long; at most ${MAX_LUKS_AREA_BYTES} is plausible`);
  if (length > MAX_HOST_OFFSET - offset) throw new Qcow2Error('CORRUPT', `The LUKS area at ${hex(offset)} runs past the end of any file`);
  return { offset, length };
}

export function serializeCryptoHeaderExtension(extension: CryptoHeaderExtension): Uint8Array {
  const data = new Uint8Array(CRYPTO_HEADER_EXTENSION_BYTES);
  const fields = view(data);
  writeU64Number(fields, 0, extension.offset);
  writeU64Number(fields, 8, extension.length);
  return data;
}
