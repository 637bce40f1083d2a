/**
 * AES-XTS per 512-byte sector, as LUKS (and dm-crypt) use it: the master key is the data key
 * followed by the tweak key; each sector is one XTS data unit whose IV (plain, plain64 or ESSIV of
 * its sector number) is encrypted with the tweak key to give its first tweak (IEEE 1619 §5.3).
 * A run of sectors costs one AES call for the first tweaks, one for the data, and two tweak passes
 * (xts-passes.ts).
 */
import type { LuksHash, LuksIvGenerator } from '../format/luks-header.ts';
import { aesEcb, type AesEcb } from './aes-ecb.ts';
import { createIvGenerator, type IvGenerator } from './iv-generator.ts';
import { SECTOR_BYTES, checkSectorRun, closedError, type SectorCipher } from './sector-run.ts';
import type { XtsPasses } from './xts-passes.ts';

export class XtsSectorCipher implements SectorCipher {
  private encryptData: AesEcb | null;
  private decryptData: AesEcb | null;
  private encryptTweak: AesEcb | null;
  private readonly ivs: IvGenerator;
  private readonly passes: XtsPasses;

  /** `key` is both XTS keys (32, 48 or 64 bytes); the caller keeps it and may zero it afterwards. */
  constructor(key: Uint8Array, ivGenerator: LuksIvGenerator, ivHash: LuksHash | null, passes: XtsPasses) {
    const half = key.length / 2;
    this.encryptData = aesEcb(key.subarray(0, half), 'encrypt');
    this.decryptData = aesEcb(key.subarray(0, half), 'decrypt');
    this.encryptTweak = aesEcb(key.subarray(half), 'encrypt');
    this.passes = passes;
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
    this.encryptData = null;
    this.decryptData = null;
    this.encryptTweak = null;
  }

  private run(data: Uint8Array, firstSector: number, blockCipher: AesEcb | null): void {
    const count = checkSectorRun(data, firstSector);
    if (blockCipher === null || this.encryptTweak === null) throw closedError();
    const runSectors = this.passes.runSectors;
    for (let done = 0; done < count; done += runSectors) {
      const sectors = Math.min(runSectors, count - done);
      const firstTweaks = this.encryptTweak.blocks(this.ivs.ivs(firstSector + done, sectors));
      this.passes.apply(data.subarray(done * SECTOR_BYTES, (done + sectors) * SECTOR_BYTES), firstTweaks, sectors, blockCipher);
    }
  }
}

