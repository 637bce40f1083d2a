/**
 * AES-XTS per 512-byte sector, as LUKS (and dm-crypt) use it: the master key is the data key
 * followed by the tweak key; each sector is one XTS data unit whose IV (plain, plain64 or ESSIV of
 * its sector number) is encrypted with the tweak key to give its first tweak (IEEE 1619 §5.3).
 * A run of sectors costs one AES call for the first tweaks, one for the data, and two tweak passes
 * (xts-passes.ts).
 * Larger data units (LUKS2's 4096-byte sectors) are still numbered by their first 512-byte sector,
 * as dm-crypt numbers them without iv_large_sectors (cryptsetup never sets it for LUKS2), and each
 * is done as its 512-byte pieces: piece k of a unit starts from the unit's first tweak times
 * α^(32k), which is where XTS over the whole unit has got to after the 32 blocks of every piece
 * before it.
 */
import type { LuksHash, LuksIvGenerator } from '../format/luks-header.ts';
import { aesEcb, type AesEcb } from './aes-ecb.ts';
import { createIvGenerator, type IvGenerator } from './iv-generator.ts';
import { Qcow2Error } from '../errors.ts';
import { SECTOR_BYTES, checkSectorRun, closedError, wordsOf, type SectorCipher } from './sector-run.ts';
import type { XtsPasses } from './xts-passes.ts';

export class XtsSectorCipher implements SectorCipher {
  private encryptData: AesEcb | null;
  private decryptData: AesEcb | null;
  private encryptTweak: AesEcb | null;
  private readonly ivs: IvGenerator;
  private readonly passes: XtsPasses;
  /** 512-byte pieces per data unit (1, or 8 for 4096-byte units). */
  private readonly unitSectors: number;
  /** Each piece's first tweak, expanded from its unit's (unitSectors > 1 only). */
  private readonly pieceTweaks: Uint8Array;
  /** Each unit's first tweak: its IV encrypted with the tweak key. */
  private readonly unitTweaks: Uint8Array;

  /**
   * `key` is both XTS keys (32, 48 or 64 bytes); the caller keeps it and may zero it afterwards.
   * `unitSectors` > 1: data units of that many 512-byte sectors, each with its first sector's IV.
   */
  constructor(key: Uint8Array, ivGenerator: LuksIvGenerator, ivHash: LuksHash | null, passes: XtsPasses, unitSectors = 1) {
    const half = key.length / 2;
    this.encryptData = aesEcb(key.subarray(0, half), 'encrypt');
    this.decryptData = aesEcb(key.subarray(0, half), 'decrypt');
    this.encryptTweak = aesEcb(key.subarray(half), 'encrypt');
    this.passes = passes;
    this.unitSectors = unitSectors;
    this.pieceTweaks = new Uint8Array(unitSectors > 1 ? passes.runSectors * 16 : 0);
    this.unitTweaks = new Uint8Array(passes.runSectors * 16);
    // ESSIV hashes the whole master key, both halves (QEMU passes it the full key).
    this.ivs = createIvGenerator(ivGenerator, ivHash, key, passes.runSectors);
  }

  encryptSectors(data: Uint8Array, firstSector: number): void {
    this.run(data, firstSector, this.encryptData);
  }

  decryptSectors(data: Uint8Array, firstSector: number): void {
    this.run(data, firstSector, this.decryptData);
  }

  close(): void {
    this.encryptData?.close();
    this.decryptData?.close();
    this.encryptTweak?.close();
    this.ivs.close();
    this.encryptData = null;
    this.decryptData = null;
    this.encryptTweak = null;
  }

  private run(data: Uint8Array, firstSector: number, blockCipher: AesEcb | null): void {
    const count = checkSectorRun(data, firstSector);
    if (count % this.unitSectors !== 0) throw new Qcow2Error('INVALID_ARGUMENT', `Encryption works on whole ${this.unitSectors * SECTOR_BYTES}-byte sectors, not ${data.length} bytes`);
    if (blockCipher === null || this.encryptTweak === null) throw closedError();
    const runSectors = this.passes.runSectors - (this.passes.runSectors % this.unitSectors);
    for (let done = 0; done < count; done += runSectors) {
      const sectors = Math.min(runSectors, count - done);
      const units = sectors / this.unitSectors;
      const unitTweaks = this.unitTweaks.subarray(0, units * 16);
      this.encryptTweak.blocksInto(this.ivs.ivs(firstSector + done, units, this.unitSectors), unitTweaks);
      const firstTweaks = this.unitSectors === 1 ? unitTweaks : this.expandTweaks(unitTweaks, units);
      this.passes.apply(data.subarray(done * SECTOR_BYTES, (done + sectors) * SECTOR_BYTES), firstTweaks, sectors, blockCipher);
    }
  }

  private expandTweaks(unitTweaks: Uint8Array, units: number): Uint8Array {
    const source = wordsOf(unitTweaks);
    const target = new Int32Array(this.pieceTweaks.buffer, 0, units * this.unitSectors * 4);
    for (let unit = 0; unit < units; unit++) {
      let t0 = source[unit * 4] as number;
      let t1 = source[unit * 4 + 1] as number;
      let t2 = source[unit * 4 + 2] as number;
      let t3 = source[unit * 4 + 3] as number;
      for (let piece = 0; piece < this.unitSectors; piece++) {
        const at = (unit * this.unitSectors + piece) * 4;
        target[at] = t0;
        target[at + 1] = t1;
        target[at + 2] = t2;
        target[at + 3] = t3;
        // × α, once per block of the piece (xts-passes.ts does the same step).
        for (let block = 0; block < SECTOR_BYTES / 16; block++) {
          const carry = t3 >> 31;
          t3 = (t3 << 1) | (t2 >>> 31);
          t2 = (t2 << 1) | (t1 >>> 31);
          t1 = (t1 << 1) | (t0 >>> 31);
          t0 = (t0 << 1) ^ (carry & 0x87);
        }
      }
    }
    return this.pieceTweaks.subarray(0, units * this.unitSectors * 16);
  }
}

