/**
 * XTS (IEEE 1619) for a run of 512-byte sectors, each its own data unit with its own first tweak:
 * XOR every block with its tweak, one AES-ECB call over the whole run, XOR again. Tweaks go from
 * block to block by multiplication by α in GF(2^128) — on 32-bit words here (the bytes are
 * little-endian, as are the hosts Node runs Cowbell on; sector-cipher.ts refuses others), or on
 * WebAssembly SIMD (xts-simd.ts) where available. Both passes recompute the tweaks rather than store
 * them: the multiplication is cheaper than the memory traffic.
 */
import type { AesEcb } from './aes-ecb.ts';
import { wordsOf } from './sector-run.ts';
import { SIMD_RUN_SECTORS, type XtsSimd } from './xts-simd.ts';

const SECTOR_BYTES = 512;
const SECTOR_WORDS = SECTOR_BYTES / 4;

export interface XtsPasses {
  /** Most sectors one apply() takes. */
  readonly runSectors: number;
  /** Encrypts or decrypts (as `blockCipher` does) `count` whole sectors in place, given each sector's first tweak (16 bytes each). */
  apply(sectors: Uint8Array, firstTweaks: Uint8Array, count: number, blockCipher: AesEcb): void;
}

/** 128 sectors (64 KiB) a run keeps data, tweaks and AES output in the core's cache; measured best of 16 to 1024. */
const WORD_RUN_SECTORS = 128;

export function wordXtsPasses(): XtsPasses {
  let scratch: Uint8Array | null = null;
  return {
    runSectors: WORD_RUN_SECTORS,
    apply(sectors, firstTweaks, count, blockCipher) {
      // Int32Array views need 4-byte alignment: a misaligned caller's bytes go through a copy.
      const aligned = (sectors.byteOffset & 3) === 0;
      if (!aligned) {
        scratch ??= new Uint8Array(WORD_RUN_SECTORS * SECTOR_BYTES);
        scratch.set(sectors);
      }
      const work = aligned ? sectors : (scratch as Uint8Array).subarray(0, sectors.length);
      const words = new Int32Array(work.buffer, work.byteOffset, count * SECTOR_WORDS);
      const tweaks = wordsOf(firstTweaks);
      xorTweaks(words, words, tweaks, count);
      blockCipher.blocksInto(work, work);
      xorTweaks(words, words, tweaks, count);
      if (!aligned) sectors.set(work);
    },
  };
}

export function simdXtsPasses(simd: XtsSimd): XtsPasses {
  return {
    runSectors: SIMD_RUN_SECTORS,
    apply(sectors, firstTweaks, count, blockCipher) {
      const length = count * SECTOR_BYTES;
      simd.tweaks.set(firstTweaks);
      simd.data.set(sectors);
      simd.xorTweaks(count);
      const run = simd.data.subarray(0, length);
      blockCipher.blocksInto(run, run);
      simd.xorTweaks(count);
      sectors.set(simd.data.subarray(0, length));
    },
  };
}

/** target[i] = source[i] ^ tweak(i) over `count` sectors; each sector starts from its first tweak (4 words). */
function xorTweaks(source: Int32Array, target: Int32Array, firstTweaks: Int32Array, count: number): void {
  let word = 0;
  for (let sector = 0; sector < count; sector++) {
    let t0 = firstTweaks[sector * 4] as number;
    let t1 = firstTweaks[sector * 4 + 1] as number;
    let t2 = firstTweaks[sector * 4 + 2] as number;
    let t3 = firstTweaks[sector * 4 + 3] as number;
    const end = word + SECTOR_WORDS;
    while (word < end) {
      target[word] = (source[word] as number) ^ t0;
      target[word + 1] = (source[word + 1] as number) ^ t1;
      target[word + 2] = (source[word + 2] as number) ^ t2;
      target[word + 3] = (source[word + 3] as number) ^ t3;
      word += 4;
      // × α: shift the 128-bit little-endian value left one bit; bit 127 folds back as 0x87.
      const carry = t3 >> 31;
      t3 = (t3 << 1) | (t2 >>> 31);
      t2 = (t2 << 1) | (t1 >>> 31);
      t1 = (t1 << 1) | (t0 >>> 31);
      t0 = (t0 << 1) ^ (carry & 0x87);
    }
  }
}
