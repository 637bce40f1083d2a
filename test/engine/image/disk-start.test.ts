/**
 * The legacy AES passphrase judgement (image/disk-start.ts) on bytes: what a wrong key gives (AES
 * output: noise) is told apart from the start of real disks — partition tables, file systems, or
 * merely structured data — and only the image's own encrypted clusters count.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DISK_START_BYTES, judgeDiskStart, judgeSamples, looksLikeNoise } from '../../../src/shared/qcow2/image/disk-start.ts';
import { SeededRandom } from '../../helpers/seeded-random.ts';

const everywhere = (): boolean => true;

/** A disk start of noise (what a wrong key decrypts anything to) with `bytes` set at `offset`. */
function noiseWith(offset: number, bytes: Uint8Array | number[]): Uint8Array {
  const start = new Uint8Array(randomBytes(DISK_START_BYTES));
  start.set(bytes, offset);
  return start;
}

const ascii = (text: string): number[] => [...text].map((character) => character.charCodeAt(0));

describe('judging a legacy AES passphrase by the start of the disk it decrypts', () => {
  it('noise everywhere (a wrong key) is noise, in a thousand tries', () => {
    for (let trial = 0; trial < 1000; trial++) {
      expect(judgeDiskStart(new Uint8Array(randomBytes(DISK_START_BYTES)), everywhere).kind).toBe('noise');
    }
  });

  it('AES-CBC output under a wrong key is noise even for a disk of zeros', () => {
    const cipher = createCipheriv('aes-128-cbc', randomBytes(16), Buffer.alloc(16));
    cipher.setAutoPadding(false);
    const garbled = new Uint8Array(Buffer.concat([cipher.update(Buffer.alloc(DISK_START_BYTES)), cipher.final()]));
    expect(judgeDiskStart(garbled, everywhere).kind).toBe('noise');
  });

  it.each([
    ['an MBR partition table', 510, [0x55, 0xaa], (start: Uint8Array) => [446, 462, 478, 494].forEach((at, index) => (start[at] = index === 0 ? 0x80 : 0))],
    ['a GPT partition table', 512, ascii('EFI PART'), null],
    ['an ext2/3/4 file system', 1080, [0x53, 0xef], (start: Uint8Array) => start.fill(0, 1049, 1052)],
    ['an NTFS file system', 3, ascii('NTFS    '), null],
    ['a FAT32 file system', 82, ascii('FAT32   '), null],
    ['an XFS file system', 0, ascii('XFSB'), null],
    ['a btrfs file system', 65536 + 64, ascii('_BHRfS_M'), null],
    ['an LVM physical volume', 512, ascii('LABELONE'), null],
    ['a swap area', 4086, ascii('SWAPSPACE2'), null],
    ['an ISO 9660 file system', 32769, ascii('CD001'), null],
  ])('%s in otherwise random bytes says the passphrase is right', (name, offset, bytes, fields) => {
    const start = noiseWith(offset, bytes);
    fields?.(start);
    expect(judgeDiskStart(start, everywhere)).toEqual({ kind: 'plausible', reason: name });
  });

  it('a two-byte magic alone (which noise matches once in 65536) is not enough', () => {
    const start = noiseWith(510, [0x55, 0xaa]);
    start[446] = 0x17;
    expect(judgeDiskStart(start, everywhere).kind).toBe('noise');
    const ext = noiseWith(1080, [0x53, 0xef]);
    ext[1050] = 0x9c;
    expect(judgeDiskStart(ext, everywhere).kind).toBe('noise');
  });

  it('any sector of structured data (zeros, text, repeated patterns) is not what a wrong key gives', () => {
    const start = new Uint8Array(randomBytes(DISK_START_BYTES));
    start.set(new TextEncoder().encode('#!/bin/sh\necho hello from a guest that has no partition table at all\n'.repeat(8)), 40 * 512);
    expect(judgeDiskStart(start, everywhere)).toEqual({ kind: 'plausible', reason: 'structured data in sector 40' });
    expect(judgeDiskStart(new Uint8Array(DISK_START_BYTES).fill(0x11), everywhere).kind).toBe('plausible');
  });

  it('only the image\'s own encrypted clusters count: a start that is unallocated (or compressed, stored in the clear) cannot tell', () => {
    const zeros = new Uint8Array(DISK_START_BYTES);
    expect(judgeDiskStart(zeros, () => false)).toEqual({ kind: 'unknown' });
    // An MBR in a plaintext (compressed) first cluster proves nothing; the encrypted second cluster is noise.
    const start = noiseWith(510, [0x55, 0xaa]);
    start.fill(0, 0, 510);
    expect(judgeDiskStart(start, (offset) => offset >= 65536).kind).toBe('noise');
  });

  it('noise is told from data by the spread of byte values in a sector', () => {
    const random = new SeededRandom(9);
    let noisy = 0;
    for (let trial = 0; trial < 2000; trial++) if (looksLikeNoise(random.bytes(512))) noisy++;
    expect(noisy).toBe(2000);
    expect(looksLikeNoise(new Uint8Array(512))).toBe(false);
    expect(looksLikeNoise(Uint8Array.from({ length: 512 }, (_, index) => index % 128))).toBe(false);
  });
});

describe('judging it by samples of its own data where the start of the disk holds none', () => {
  it('noise when every sampled sector is noise, plausible when one is not, unknown with nothing sampled', () => {
    const noise = Array.from({ length: 8 }, () => new Uint8Array(randomBytes(4096)));
    expect(judgeSamples(noise).kind).toBe('noise');
    const oneTable = noise.map((sample) => sample.slice());
    oneTable[5]?.fill(0, 1024, 1536);
    expect(judgeSamples(oneTable).kind).toBe('plausible');
    expect(judgeSamples([]).kind).toBe('unknown');
  });
});
