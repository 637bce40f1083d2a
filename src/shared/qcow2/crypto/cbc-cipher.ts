/**
 * AES-CBC per 512-byte sector (LUKS "cbc-plain", "cbc-plain64", "cbc-essiv:sha256", and legacy
 * qcow2 AES): each sector chains from its own IV. Decryption runs one CBC call over a whole run
 * and then mends the first block of each sector, which OpenSSL chained from the block before it
 * instead of the sector's IV. Encryption is serial within a sector, so a run advances all its
 * sectors in lockstep: block j of every sector, XORed with block j-1's ciphertext, goes through
 * one AES-ECB call (32 calls per run instead of one cipher object per sector).
 */
import type { Decipheriv } from 'node:crypto';
import { nodeCrypto } from './node-crypto.ts';
import { Qcow2Error } from '../errors.ts';
import type { LuksHash, LuksIvGenerator } from '../format/luks-header.ts';
import { AES_BLOCK_BYTES, aesAlgorithm, aesEcb, type AesEcb } from './aes-ecb.ts';
import { createIvGenerator, type IvGenerator } from './iv-generator.ts';
import { SECTOR_BYTES, checkSectorRun, closedError, wordsOf, type SectorCipher } from './sector-run.ts';

/** 1024 sectors (512 KiB) per run: lockstep encryption needs long runs to spread its 32 calls; measured best of 64 to 1024. */
const RUN_SECTORS = 1024;
const SECTOR_WORDS = SECTOR_BYTES / 4;
const BLOCKS_PER_SECTOR = SECTOR_BYTES / AES_BLOCK_BYTES;

export class CbcSectorCipher implements SectorCipher {
  private encryptBlocks: AesEcb | null;
  private decryptChain: Decipheriv | null;
  /** The last ciphertext block `decryptChain` was fed: OpenSSL chains the next call's first block from it. */
  private readonly chainedFrom = new Uint8Array(AES_BLOCK_BYTES);
  private readonly ivs: IvGenerator;
  private readonly lockstepBytes = new Uint8Array(RUN_SECTORS * AES_BLOCK_BYTES);
  private readonly lockstep = new Int32Array(this.lockstepBytes.buffer);
  private readonly ciphertextBytes = new Uint8Array(RUN_SECTORS * AES_BLOCK_BYTES);
  private readonly ciphertext = new Int32Array(this.ciphertextBytes.buffer);
  private scratch: Uint8Array | null = null;

  /** `key` is the AES key (16, 24 or 32 bytes); the caller keeps it and may zero it afterwards. */
  constructor(key: Uint8Array, ivGenerator: LuksIvGenerator, ivHash: LuksHash | null) {
    this.encryptBlocks = aesEcb(key, 'encrypt');
    this.decryptChain = nodeCrypto().createDecipheriv(aesAlgorithm(key.length, 'cbc'), key, this.chainedFrom);
    this.decryptChain.setAutoPadding(false);
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
    this.ivs.close();
    this.encryptBlocks = null;
    this.decryptChain = null;
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
    const chain = this.decryptChain;
    if (chain === null) throw closedError();
    const plain = chain.update(run);
    if (plain.length !== run.length) throw new Qcow2Error('INTERNAL', `AES-CBC returned ${plain.length} bytes for ${run.length}`);
    const ivs = this.ivs.ivs(firstSector, count);
    for (let sector = 0; sector < count; sector++) {
      const at = sector * SECTOR_BYTES;
      // OpenSSL XORed this sector's first block with the ciphertext block before it; it wanted the IV.
      const before = sector === 0 ? this.chainedFrom : run.subarray(at - AES_BLOCK_BYTES, at);
      for (let index = 0; index < AES_BLOCK_BYTES; index++) {
        plain[at + index] = (plain[at + index] as number) ^ (before[index] as number) ^ (ivs[sector * AES_BLOCK_BYTES + index] as number);
      }
    }
    this.chainedFrom.set(run.subarray(run.length - AES_BLOCK_BYTES));
    run.set(plain);
  }
}
