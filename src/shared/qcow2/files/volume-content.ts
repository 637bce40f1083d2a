/**
 * What a volume holds when it is no filesystem Cowbell reads, where its partition type or its
 * signature says: swap space, an encrypted volume, a boot loader's partition. Named, a swap
 * partition or Windows's reserved partition is what it is — not "no filesystem", which reads as
 * damage. Only signatures at fixed places are looked at; nothing here is trusted further.
 */
import type { VolumeContent } from '../model.ts';
import type { VolumeBytes } from './filesystem.ts';

/** Partition types that say what a partition holds, whatever its bytes. */
const BY_PARTITION_TYPE: Record<string, VolumeContent> = {
  '21686148-6449-6E6F-744E-656564454649': 'bios-boot',
  'E3C9E316-0B5C-4DB8-817D-F92DF00215AE': 'microsoft-reserved',
  '0657FD6D-A4AB-43C4-84E5-0933C84B4F4F': 'swap',
  '0x82': 'swap',
};

interface Signature {
  content: VolumeContent;
  offset: number;
  bytes: Uint8Array;
}

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (character) => character.charCodeAt(0));

const SIGNATURES: readonly Signature[] = [
  { content: 'luks', offset: 0, bytes: Uint8Array.of(0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe) },
  { content: 'bitlocker', offset: 3, bytes: ascii('-FVE-FS-') },
  // Swap's signature ends its first page: 4 KiB on x86 and most others, 64 KiB on some arm64 and ppc64 kernels.
  ...[4096, 8192, 16384, 65536].flatMap((page) => [
    { content: 'swap' as const, offset: page - 10, bytes: ascii('SWAPSPACE2') },
    { content: 'swap' as const, offset: page - 10, bytes: ascii('SWAP-SPACE') },
  ]),
  { content: 'exfat', offset: 3, bytes: ascii('EXFAT   ') },
  // md's version 1.1 and 1.2 superblocks (at 0 and 4 KiB); 0.90 and 1.0 lie at the end, where a probe does not look.
  { content: 'linux-raid', offset: 0, bytes: Uint8Array.of(0xfc, 0x4e, 0x2b, 0xa9) },
  { content: 'linux-raid', offset: 4096, bytes: Uint8Array.of(0xfc, 0x4e, 0x2b, 0xa9) },
  { content: 'iso9660', offset: 32769, bytes: ascii('CD001') },
];

const PROBE_BYTES = 65536;

/** What the volume holds, by its partition type or a signature at its start; null when neither says. */
export async function volumeContent(volume: VolumeBytes, partitionType?: string): Promise<VolumeContent | null> {
  const byType = partitionType === undefined ? undefined : BY_PARTITION_TYPE[partitionType];
  if (byType !== undefined) return byType;
  const start = new Uint8Array(Math.min(PROBE_BYTES, volume.length));
  await volume.read(start, 0);
  for (const signature of SIGNATURES) {
    const end = signature.offset + signature.bytes.length;
    if (end <= start.length && signature.bytes.every((byte, index) => start[signature.offset + index] === byte)) return signature.content;
  }
  return null;
}
