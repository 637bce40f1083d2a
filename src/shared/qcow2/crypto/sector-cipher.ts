/**
 * The per-sector payload cipher of a LUKS image (and of legacy qcow2 AES): AES-128/192/256 in XTS
 * or CBC, with the plain, plain64 or essiv:sha256 IV generator, over whole 512-byte sectors in
 * place. Anything else is refused here with UNSUPPORTED_FEATURE naming it, so a header that parsed
 * but names something new cannot reach the data.
 */
import { Qcow2Error } from '../errors.ts';
import { validKeyBytes, type LuksHash, type LuksIvGenerator } from '../format/luks-header.ts';
import { CbcSectorCipher } from './cbc-cipher.ts';
import { assertLittleEndian, type SectorCipher } from './sector-run.ts';
import { XtsSectorCipher } from './xts-cipher.ts';
import { simdXtsPasses, wordXtsPasses } from './xts-passes.ts';
import { xtsSimd } from './xts-simd.ts';

export type { SectorCipher } from './sector-run.ts';

export interface SectorCipherSpec {
  mode: string;
  ivGenerator: LuksIvGenerator;
  ivHash: LuksHash | null;
}

export interface SectorCipherOptions {
  /** Use WebAssembly SIMD for XTS where available (default); false forces the JavaScript path (tests compare the two). */
  simd?: boolean;
  /**
   * Bytes per data unit: 512 (default), or up to 4096 as LUKS2 allows. Sector numbers stay
   * 512-byte ones (a unit's IV is its first sector's, as dm-crypt without iv_large_sectors: how
   * LUKS2 is activated); runs must be whole units. XTS only.
   */
  unitBytes?: number;
}

export function createSectorCipher(spec: SectorCipherSpec, key: Uint8Array, options: SectorCipherOptions = {}): SectorCipher {
  assertLittleEndian();
  const { mode, ivGenerator, ivHash } = spec;
  if (mode !== 'xts' && mode !== 'cbc') throw new Qcow2Error('UNSUPPORTED_FEATURE', `The cipher mode "${mode}" is not supported (xts, cbc)`);
  if (ivGenerator !== 'plain' && ivGenerator !== 'plain64' && ivGenerator !== 'essiv') {
    throw new Qcow2Error('UNSUPPORTED_FEATURE', `The IV generator "${String(ivGenerator)}" is not supported (plain, plain64, essiv)`);
  }
  if (ivGenerator === 'essiv' && ivHash !== 'sha256') throw new Qcow2Error('UNSUPPORTED_FEATURE', `ESSIV with ${ivHash ?? 'no hash'} is not supported (only essiv:sha256)`);
  if (!validKeyBytes(mode).includes(key.length)) {
    throw new Qcow2Error('INVALID_ARGUMENT', `aes-${mode} takes a key of ${validKeyBytes(mode).join(', ')} bytes, not ${key.length}`);
  }
  const unitBytes = options.unitBytes ?? 512;
  if (![512, 1024, 2048, 4096].includes(unitBytes)) throw new Qcow2Error('UNSUPPORTED_FEATURE', `Encryption sectors of ${unitBytes} bytes are not supported (512 to 4096, a power of two)`);
  if (mode === 'cbc') {
    if (unitBytes !== 512) throw new Qcow2Error('UNSUPPORTED_FEATURE', `aes-cbc with ${unitBytes}-byte encryption sectors is not supported (only aes-xts)`);
    return new CbcSectorCipher(key, ivGenerator, ivHash);
  }
  const simd = options.simd === false ? null : xtsSimd();
  return new XtsSectorCipher(key, ivGenerator, ivHash, simd === null ? wordXtsPasses() : simdXtsPasses(simd), unitBytes / 512);
}
