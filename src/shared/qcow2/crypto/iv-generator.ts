/**
 * The per-sector IVs of dm-crypt and LUKS (QEMU crypto/ivgen-plain.c, ivgen-plain64.c,
 * ivgen-essiv.c): "plain" is the sector number's low 32 bits, little-endian, zero-padded to the
 * 16-byte AES block (so it wraps past 2 TiB); "plain64" the whole 64-bit number; "essiv" the plain64
 * block encrypted with AES under the hash of the key. ESSIV's AES takes the digest as its key, so
 * sha256 means AES-256 whatever the data cipher's size (QEMU follows dm-crypt's quirk here).
 */
import { nodeCrypto } from './node-crypto.ts';
import { Qcow2Error } from '../errors.ts';
import type { LuksHash, LuksIvGenerator } from '../format/luks-header.ts';
import { AES_BLOCK_BYTES, aesEcb, type AesEcb } from './aes-ecb.ts';

const TWO_POW_32 = 0x1_0000_0000;

export interface IvGenerator {
  /** IVs of `count` sectors from `firstSector`, `step` apart (1 unless data units are larger than a sector), 16 bytes each, in a buffer valid until the next call. */
  ivs(firstSector: number, count: number, step?: number): Uint8Array;
  /** Frees what the generator holds of the key (ESSIV's AES context). */
  close(): void;
}

/** `maxCount` bounds `count` (the caller's run size), so the buffer is allocated once. */
export function createIvGenerator(kind: LuksIvGenerator, ivHash: LuksHash | null, key: Uint8Array, maxCount: number): IvGenerator {
  switch (kind) {
    case 'plain':
      return new SectorNumberIvs(false, maxCount);
    case 'plain64':
      return new SectorNumberIvs(true, maxCount);
    case 'essiv':
      if (ivHash !== 'sha256') throw new Qcow2Error('UNSUPPORTED_FEATURE', `ESSIV with ${ivHash ?? 'no hash'} is not supported (only essiv:sha256)`);
      return new EssivIvs(key, maxCount);
    default:
      throw new Qcow2Error('UNSUPPORTED_FEATURE', `The IV generator "${String(kind)}" is not supported (plain, plain64, essiv)`);
  }
}

class SectorNumberIvs implements IvGenerator {
  private readonly wide: boolean;
  private readonly buffer: Uint8Array;
  private readonly fields: DataView;

  constructor(wide: boolean, maxCount: number) {
    this.wide = wide;
    this.buffer = new Uint8Array(maxCount * AES_BLOCK_BYTES);
    this.fields = new DataView(this.buffer.buffer);
  }

  ivs(firstSector: number, count: number, step = 1): Uint8Array {
    // Bytes 4/8 to 15 of each IV are never written: they stay zero.
    for (let index = 0; index < count; index++) {
      const sector = firstSector + index * step;
      this.fields.setUint32(index * AES_BLOCK_BYTES, sector % TWO_POW_32, true);
      if (this.wide) this.fields.setUint32(index * AES_BLOCK_BYTES + 4, Math.floor(sector / TWO_POW_32), true);
    }
    return this.buffer.subarray(0, count * AES_BLOCK_BYTES);
  }

  close(): void {}
}

class EssivIvs implements IvGenerator {
  private readonly sectorNumbers: SectorNumberIvs;
  private readonly cipher: AesEcb;
  /** The encrypted IVs (the sector numbers' buffer must keep its zero high bytes, so not in place). */
  private readonly output: Uint8Array;

  constructor(key: Uint8Array, maxCount: number) {
    this.sectorNumbers = new SectorNumberIvs(true, maxCount);
    this.output = new Uint8Array(maxCount * AES_BLOCK_BYTES);
    const salt = nodeCrypto().createHash('sha256').update(key).digest();
    this.cipher = aesEcb(salt, 'encrypt');
    salt.fill(0);
  }

  ivs(firstSector: number, count: number, step = 1): Uint8Array {
    const output = this.output.subarray(0, count * AES_BLOCK_BYTES);
    this.cipher.blocksInto(this.sectorNumbers.ivs(firstSector, count, step), output);
    return output;
  }

  close(): void {
    this.cipher.close();
  }
}
