/**
 * The one view of an encrypted image's data the image layer needs: decrypt or encrypt whole
 * 512-byte sectors in place, given where they live. LUKS-in-qcow2 numbers its sectors by HOST
 * offset / 512 (block/qcow2.c uses the physical offset, so tweaks stay unique across snapshots and
 * a cluster moved on disk must be re-encrypted); legacy AES by GUEST offset / 512. Compressed
 * clusters are stored unencrypted in both and must never pass through here.
 */
import { Qcow2Error } from '../errors.ts';
import { hex } from '../format/bytes.ts';
import { parseCryptoHeaderExtension, type CryptoHeaderExtension } from '../format/crypto-header-extension.ts';
import { EXT_CRYPTO_HEADER, clusterSize, findExtension, type Header } from '../format/header.ts';
import { LUKS_PHDR_BYTES, parseLuksHeader, type LuksHeader } from '../format/luks-header.ts';
import type { BlockFile } from '../io/block-file.ts';
import { silentJob, type JobContext } from '../job-context.ts';
import { legacyAesSectorCipher } from './legacy-aes.ts';
import { luksAreaReader, type LuksAreaReader } from './luks-area.ts';
import { unlockLuks, type Passphrase } from './luks-keys.ts';
import { SECTOR_BYTES, type SectorCipher } from './sector-run.ts';
import { createSectorCipher } from './sector-cipher.ts';

export interface DiskCipher {
  readonly kind: 'luks' | 'aes';
  /** Decrypts whole sectors in place; `hostOffset` is where `data` lies in the file, `guestOffset` where in the disk. */
  decrypt(data: Uint8Array, hostOffset: number, guestOffset: number): void;
  encrypt(data: Uint8Array, hostOffset: number, guestOffset: number): void;
  close(): void;
}

export interface OpenedLuks {
  cipher: DiskCipher;
  header: LuksHeader;
  /** The key slot the passphrase opened. */
  slot: number;
}

export interface OpenedImageCipher {
  cipher: DiskCipher;
  /** For LUKS images: the parsed header, where its area is, and the slot that opened. */
  luks: (OpenedLuks & { area: CryptoHeaderExtension }) | null;
}

/** A LUKS image's data cipher from its master key (copied into the cipher; the caller may zero its buffer). */
export function luksDiskCipher(header: LuksHeader, masterKey: Uint8Array): DiskCipher {
  return sectorDiskCipher('luks', createSectorCipher(header.cipher, masterKey), 'host');
}

/** A legacy AES image's data cipher; any passphrase "works" (the format has no key check). */
export function legacyAesDiskCipher(passphrase: string | Uint8Array): DiskCipher {
  return sectorDiskCipher('aes', legacyAesSectorCipher(passphrase), 'guest');
}

/** Parses the LUKS header at the start of an area of `areaLength` bytes and unlocks it with `passphrase`. */
export function openLuksDiskCipher(readArea: LuksAreaReader, areaLength: number, passphrase: Passphrase, job: JobContext = silentJob): OpenedLuks {
  if (areaLength < LUKS_PHDR_BYTES) throw new Qcow2Error('CORRUPT', `The LUKS area is ${areaLength} bytes long, too short for a LUKS header`);
  const header = parseLuksHeader(readArea(0, LUKS_PHDR_BYTES), areaLength);
  const { masterKey, slot } = unlockLuks(header, readArea, passphrase, job);
  try {
    return { cipher: luksDiskCipher(header, masterKey), header, slot };
  } finally {
    masterKey.fill(0);
  }
}

/** The data cipher of an encrypted qcow2 image (crypt_method 1 or 2), from its parsed header and file. */
export function openImageCipher(file: BlockFile, header: Header, passphrase: Passphrase, job: JobContext = silentJob): OpenedImageCipher {
  if (header.cryptMethod === 1) return { cipher: legacyAesDiskCipher(passphrase), luks: null };
  if (header.cryptMethod !== 2) throw new Qcow2Error('INVALID_ARGUMENT', 'The image is not encrypted');
  const extension = findExtension(header, EXT_CRYPTO_HEADER);
  if (extension === undefined) throw new Qcow2Error('CORRUPT', 'The image is LUKS-encrypted but has no encryption header extension');
  const area = parseCryptoHeaderExtension(extension.data, clusterSize(header));
  const opened = openLuksDiskCipher(luksAreaReader(file, area), area.length, passphrase, job);
  return { cipher: opened.cipher, luks: { ...opened, area } };
}

function sectorDiskCipher(kind: 'luks' | 'aes', sectors: SectorCipher, numberedBy: 'host' | 'guest'): DiskCipher {
  const firstSector = (hostOffset: number, guestOffset: number): number => {
    const offset = numberedBy === 'host' ? hostOffset : guestOffset;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % SECTOR_BYTES !== 0) {
      throw new Qcow2Error('INVALID_ARGUMENT', `Encrypted data starts on a 512-byte boundary; ${numberedBy} offset ${hex(offset)} does not`);
    }
    return offset / SECTOR_BYTES;
  };
  return {
    kind,
    decrypt: (data, hostOffset, guestOffset) => sectors.decryptSectors(data, firstSector(hostOffset, guestOffset)),
    encrypt: (data, hostOffset, guestOffset) => sectors.encryptSectors(data, firstSector(hostOffset, guestOffset)),
    close: () => sectors.close(),
  };
}
