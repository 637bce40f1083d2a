/**
 * Does a legacy AES passphrase (crypt_method 1) decrypt this disk, or only garble it? The format
 * has no key check: any passphrase "opens" it, and a wrong one turns every sector into noise. So
 * the start of the guest disk is judged as decrypted: a partition table or a known file system's
 * signature, or simply bytes that are not noise (a wrong AES key cannot give a sector of zeros or
 * of text), say the passphrase is right. Only this image's own encrypted clusters count: an
 * unallocated, zero or compressed start (QEMU stores compressed clusters unencrypted) says nothing.
 */

/**
 * A signature at its byte offset in the guest disk, with what it names. Noise matches a two-byte
 * magic once in 65536 tries, so those come with a second test of fields around them.
 */
interface Signature {
  name: string;
  offset: number;
  bytes: Uint8Array;
  /** A second test the signature needs, over the guest bytes `reads` ([offset, length]), which must be the image's own too. */
  also?: { reads: [number, number]; holds: (start: Uint8Array) => boolean };
}

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (character) => character.charCodeAt(0));

const SIGNATURES: readonly Signature[] = [
  {
    name: 'an MBR partition table',
    offset: 510,
    bytes: Uint8Array.of(0x55, 0xaa),
    // Each of the four entries' status byte is 0x00 or 0x80 (bootable).
    also: { reads: [446, 64], holds: (start) => [446, 462, 478, 494].every((at) => start[at] === 0x00 || start[at] === 0x80) },
  },
  { name: 'a GPT partition table', offset: 512, bytes: ascii('EFI PART') },
  { name: 'a GPT partition table (4 KiB sectors)', offset: 4096, bytes: ascii('EFI PART') },
  {
    name: 'an ext2/3/4 file system',
    offset: 1080,
    bytes: Uint8Array.of(0x53, 0xef),
    // s_log_block_size (little-endian u32 at 1048) is at most 6: its three high bytes are zero.
    also: { reads: [1048, 4], holds: (start) => start[1049] === 0 && start[1050] === 0 && start[1051] === 0 },
  },
  { name: 'a FAT12/16 file system', offset: 54, bytes: ascii('FAT1') },
  { name: 'a FAT32 file system', offset: 82, bytes: ascii('FAT32   ') },
  { name: 'an NTFS file system', offset: 3, bytes: ascii('NTFS    ') },
  { name: 'an exFAT file system', offset: 3, bytes: ascii('EXFAT   ') },
  { name: 'an XFS file system', offset: 0, bytes: ascii('XFSB') },
  { name: 'a btrfs file system', offset: 65536 + 64, bytes: ascii('_BHRfS_M') },
  { name: 'an LVM physical volume', offset: 512, bytes: ascii('LABELONE') },
  { name: 'a swap area', offset: 4086, bytes: ascii('SWAPSPACE2') },
  { name: 'a swap area (old format)', offset: 4086, bytes: ascii('SWAP-SPACE') },
  { name: 'an ISO 9660 file system', offset: 32769, bytes: ascii('CD001') },
  { name: 'a LUKS volume', offset: 0, bytes: Uint8Array.of(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe) },
];

/** How much of the disk's start the judgement reads: past the last signature (btrfs's, at 64 KiB + 64). */
export const DISK_START_BYTES = 68 * 1024;

const SECTOR = 512;
/**
 * 512 random bytes hold about 221 distinct values (σ ≈ 5); fewer than 160 is not what AES under a
 * wrong key gives (about 12σ away), while zeros, text, tables and code all stay far below it.
 */
const NOISE_MIN_DISTINCT = 160;

export type DiskStartVerdict =
  | { kind: 'plausible'; reason: string }
  /** Nothing of this image's own encrypted data in the disk's start: the passphrase cannot be judged. */
  | { kind: 'unknown' }
  | { kind: 'noise' };

/**
 * Judges the decrypted start of a disk. `start` is the guest bytes from offset 0 (up to
 * DISK_START_BYTES); `encrypted(offset)` says whether the byte at that guest offset lies in one of
 * the image's own encrypted data clusters (only those say anything about the passphrase).
 */
export function judgeDiskStart(start: Uint8Array, encrypted: (guestOffset: number) => boolean): DiskStartVerdict {
  let sawEncrypted = false;
  const inOwnData = (offset: number, length: number): boolean => offset + length <= start.length && encrypted(offset) && encrypted(offset + length - 1);
  for (const signature of SIGNATURES) {
    if (!inOwnData(signature.offset, signature.bytes.length)) continue;
    if (!signature.bytes.every((byte, index) => start[signature.offset + index] === byte)) continue;
    if (signature.also !== undefined && !(inOwnData(...signature.also.reads) && signature.also.holds(start))) continue;
    return { kind: 'plausible', reason: signature.name };
  }
  for (let sector = 0; sector + SECTOR <= start.length; sector += SECTOR) {
    if (!encrypted(sector)) continue;
    sawEncrypted = true;
    if (!looksLikeNoise(start.subarray(sector, sector + SECTOR))) return { kind: 'plausible', reason: `structured data in sector ${sector / SECTOR}` };
  }
  return sawEncrypted ? { kind: 'noise' } : { kind: 'unknown' };
}

/**
 * Where the disk's start says nothing (none of the image's own encrypted data is there: never
 * written, zeroed, compressed), samples of its encrypted data elsewhere are judged instead: the
 * first SAMPLE_BYTES of up to SAMPLE_CLUSTERS of its own data clusters, in guest order, the current
 * state's first. A wrong key turns every one of their sectors into noise; a real disk's clusters
 * hold tables, text, code or zeros somewhere among them.
 */
export const SAMPLE_CLUSTERS = 256;
export const SAMPLE_BYTES = 4096;

/** Judges decrypted samples of the image's own encrypted clusters (whole sectors each). */
export function judgeSamples(samples: readonly Uint8Array[]): DiskStartVerdict {
  let sectors = 0;
  for (const sample of samples) {
    for (let sector = 0; sector + SECTOR <= sample.length; sector += SECTOR) {
      sectors++;
      if (!looksLikeNoise(sample.subarray(sector, sector + SECTOR))) return { kind: 'plausible', reason: 'structured data in the disk\'s own clusters' };
    }
  }
  return sectors > 0 ? { kind: 'noise' } : { kind: 'unknown' };
}

/** Whether a sector looks like what a block cipher gives under a wrong key: nearly uniform bytes. */
export function looksLikeNoise(sector: Uint8Array): boolean {
  const seen = new Uint8Array(256);
  let distinct = 0;
  for (const byte of sector) {
    if (seen[byte] === 0) {
      seen[byte] = 1;
      distinct++;
    }
  }
  return distinct >= NOISE_MIN_DISTINCT;
}
