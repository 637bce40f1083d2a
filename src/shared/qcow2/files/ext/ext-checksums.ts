/**
 * metadata_csum's seeds: every checksum of an inode's own metadata (the inode, its extent tree
 * blocks, its folder blocks) starts from the filesystem's seed (ext-superblock.ts) followed by the
 * inode's number and generation, as the kernel's ext4_inode_csum_seed computes it.
 */
import { crc32c } from '../crc32c.ts';
import type { ExtSuperblock } from './ext-superblock.ts';

/** The seed of an inode's own metadata checksums (its extent blocks, its folder blocks): the filesystem's seed, then its number and generation; null without metadata_csum. */
export function inodeChecksumSeed(superblock: Pick<ExtSuperblock, 'checksumSeed'>, inode: { number: number; generation: number }): number | null {
  if (superblock.checksumSeed === null) return null;
  SEED_VIEW.setUint32(0, inode.number, true);
  SEED_VIEW.setUint32(4, inode.generation, true);
  return crc32c(SEED_FIELDS, superblock.checksumSeed);
}

// One scratch buffer (crc32c is synchronous): listing a large folder computes tens of thousands of seeds.
const SEED_FIELDS = new Uint8Array(8);
const SEED_VIEW = new DataView(SEED_FIELDS.buffer);

