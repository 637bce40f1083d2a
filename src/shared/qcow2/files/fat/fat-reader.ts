/** FAT12/16/32 (EFI system partitions, DOS and older Windows guests) for the readers' registry. */
import type { FilesystemReader } from '../filesystem.ts';
import { BOOT_SECTOR_BYTES, looksLikeFat } from './boot-sector.ts';
import { FatFilesystem } from './fat-filesystem.ts';

export const FAT_READER: FilesystemReader = {
  kind: 'fat',
  async probe(volume) {
    if (volume.length < BOOT_SECTOR_BYTES) return false;
    const sector = new Uint8Array(BOOT_SECTOR_BYTES);
    await volume.read(sector, 0);
    return looksLikeFat(sector);
  },
  open: (volume) => FatFilesystem.open(volume),
};
