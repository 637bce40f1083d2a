/** NTFS in the registry of filesystem readers: the boot sector's "NTFS    " signature, then the read-only reader. */
import type { FilesystemReader, VolumeBytes } from '../filesystem.ts';
import { BOOT_SECTOR_SIZE, hasNtfsSignature } from './boot-sector.ts';
import { NtfsFilesystem } from './ntfs-filesystem.ts';

export const NTFS_READER: FilesystemReader = {
  kind: 'ntfs',
  async probe(volume: VolumeBytes): Promise<boolean> {
    if (volume.length < BOOT_SECTOR_SIZE) return false;
    const sector = new Uint8Array(BOOT_SECTOR_SIZE);
    await volume.read(sector, 0);
    return hasNtfsSignature(sector);
  },
  open: (volume) => NtfsFilesystem.open(volume),
};
