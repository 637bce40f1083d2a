/**
 * AES-CBC per 512-byte sector (LUKS "cbc-plain", "cbc-plain64", "cbc-essiv:sha256", and legacy
 * qcow2 AES): each sector chains from its own IV. Decryption is one AES-ECB call over a whole run,
 * each block then XORed with the ciphertext block before it (the sector's IV for its first).
 * Encryption is serial within a sector, so a run advances all its sectors in lockstep: block j of
 * every sector, XORed with block j-1's ciphertext, goes through one AES-ECB call (32 calls per run
 * instead of one cipher object per sector).
 */
import type { LuksHash, LuksIvGenerator } from '../format/luks-header.ts';
import { AES_BLOCK_BYTES, aesEcb, type AesEcb } from './aes-ecb.ts';
import { createIvGenerator, type IvGenerator } from './iv-generator.ts';
import { SECTOR_BYTES, checkSectorRun, closedError, wordsOf, type SectorCipher } from './sector-run.ts';

/** 1024 sectors (512 KiB) per run: lockstep encryption needs long runs to spread its 32 calls; measured best of 64 to 1024. */
const RUN_SECTORS = 1024;
const SECTOR_WORDS = SECTOR_BYTES / 4;
const BLOCKS_PER_SECTOR = SECTOR_BYTES / AES_BLOCK_BYTES;

export class CbcSectorCipher implements SectorCipher {
  private encryptBlocks: AesEcb | null;
  private decryptBlocks: AesEcb | null;
  private readonly ivs: IvGenerator;
  private readonly lockstepBytes = new Uint8Array(RUN_SECTORS * AES_BLOCK_BYTES);
  private readonly lockstep = new Int32Array(this.lockstepBytes.buffer);
  private readonly ciphertextBytes = new Uint8Array(RUN_SECTORS * AES_BLOCK_BYTES);
  private readonly ciphertext = new Int32Array(this.ciphertextBytes.buffer);
  private scratch: Uint8Array | null = null;
  private plainBytes: Uint8Array | null = null;

  /** `key` is the AES key (16, 24 or 32 bytes); the caller keeps it and may zero it afterwards. */
  constructor(key: Uint8Array, ivGenerator: LuksIvGenerator, ivHash: LuksHash | null) {
    this.encryptBlocks = aesEcb(key, 'encrypt');
    this.decryptBlocks = aesEcb(key, 'decrypt');
    this.ivs = createIvGenerator(ivGenerator, ivHash, key, RUN_SECTORS);
  }

  encryptSectors(data: Uint8Array, firstSector: number): void {
    const count = checkSectorRun(data, firstSector);
    for (let done = 0; done < count; done += RUN_SECTORS) {
      const sectors = Math.min(RUN_SECTORS, count - done);
      this.encryptRun(data.subarray(done * SECTOR_BYTES, (done + sectors) * SECTOR_BYTES), firstSector + done, sectors);
    }
  }

  decryptSectors(data: Uint8Array, firstSector: number): void {
    const count = checkSectorRun(data, firstSector);
    for (let done = 0; done < count; done += RUN_SECTORS) {
      const sectors = Math.min(RUN_SECTORS, count - done);
      this.decryptRun(data.subarray(done * SECTOR_BYTES, (done + sectors) * SECTOR_BYTES), firstSector + done, sectors);
    }
  }

  close(): void {
    this.encryptBlocks?.close();
    this.decryptBlocks?.close();
    this.ivs.close();
    this.encryptBlocks = null;
    this.decryptBlocks = null;
  }

  private encryptRun(run: Uint8Array, firstSector: number, count: number): void {
    const blockCipher = this.encryptBlocks;
    if (blockCipher === null) throw closedError();
    // Int32Array views need 4-byte alignment: a misaligned caller's bytes go through a copy.
    const aligned = (run.byteOffset & 3) === 0;
    if (!aligned) {
      this.scratch ??= new Uint8Array(RUN_SECTORS * SECTOR_BYTES);
      this.scratch.set(run);
    }
    const work = aligned ? run : (this.scratch as Uint8Array).subarray(0, run.length);
    const words = new Int32Array(work.buffer, work.byteOffset, count * SECTOR_WORDS);
    const ivs = wordsOf(this.ivs.ivs(firstSector, count));
    const lockstep = this.lockstep;
    for (let sector = 0; sector < count; sector++) {
      for (let word = 0; word < 4; word++) lockstep[sector * 4 + word] = (words[sector * SECTOR_WORDS + word] as number) ^ (ivs[sector * 4 + word] as number);
    }
    const input = this.lockstepBytes.subarray(0, count * AES_BLOCK_BYTES);
    const ciphertext = this.ciphertext;
    for (let block = 0; block < BLOCKS_PER_SECTOR; block++) {
      blockCipher.blocksInto(input, this.ciphertextBytes);
      const last = block === BLOCKS_PER_SECTOR - 1;
      for (let sector = 0, at = block * 4; sector < count; sector++, at += SECTOR_WORDS) {
        const c0 = ciphertext[sector * 4] as number;
        const c1 = ciphertext[sector * 4 + 1] as number;
        const c2 = ciphertext[sector * 4 + 2] as number;
        const c3 = ciphertext[sector * 4 + 3] as number;
        words[at] = c0;
        words[at + 1] = c1;
        words[at + 2] = c2;
        words[at + 3] = c3;
        if (last) continue;
        lockstep[sector * 4] = (words[at + 4] as number) ^ c0;
        lockstep[sector * 4 + 1] = (words[at + 5] as number) ^ c1;
        lockstep[sector * 4 + 2] = (words[at + 6] as number) ^ c2;
        lockstep[sector * 4 + 3] = (words[at + 7] as number) ^ c3;
      }
    }
    if (!aligned) run.set(work);
  }

  private decryptRun(run: Uint8Array, firstSector: number, count: number): void {
    const blockCipher = this.decryptBlocks;
    if (blockCipher === null) throw closedError();
    this.plainBytes ??= new Uint8Array(RUN_SECTORS * SECTOR_BYTES);
    const plainBytes = this.plainBytes.subarray(0, run.length);
    blockCipher.blocksInto(run, plainBytes);
    const plain = new Int32Array(plainBytes.buffer, 0, count * SECTOR_WORDS);
    const ciphertext = wordsOf(run);
    const ivs = wordsOf(this.ivs.ivs(firstSector, count));
    for (let sector = 0; sector < count; sector++) {
      const at = sector * SECTOR_WORDS;
      for (let word = 0; word < 4; word++) plain[at + word] = (plain[at + word] as number) ^ (ivs[sector * 4 + word] as number);
      for (let word = 4; word < SECTOR_WORDS; word++) plain[at + word] = (plain[at + word] as number) ^ (ciphertext[at + word - 4] as number);
    }
    run.set(plainBytes);
  }
}
