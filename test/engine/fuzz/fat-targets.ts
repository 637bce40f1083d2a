/**
 * What the fuzzer runs on a mutated FAT volume (a raw file): the registry's probe, and the walk a
 * user's browse, files-diff and copy-out would do (every folder listed, every file read and
 * located, bounded). The volume refuses reads past its end with a plain Error: a finding.
 */
import { FILESYSTEM_READERS } from '../../../src/shared/qcow2/files/filesystems.ts';
import { FAT_READER } from '../../../src/shared/qcow2/files/fat/fat-reader.ts';
import type { VolumeBytes } from '../../../src/shared/qcow2/files/filesystem.ts';
import { fileVolume } from '../files/fat-fixtures.ts';
import { walkEverything } from '../files/fat-walk.ts';
import type { FuzzTarget } from './protocol.ts';

async function withVolume<T>(imagePath: string, use: (volume: VolumeBytes) => Promise<T>): Promise<T> {
  const volume = fileVolume(imagePath);
  try {
    return await use(volume);
  } finally {
    volume.close();
  }
}

export const FAT_TARGETS: FuzzTarget[] = [
  {
    name: 'fat-probe',
    run: (imagePath) =>
      withVolume(imagePath, async (volume) => {
        for (const reader of FILESYSTEM_READERS) await reader.probe(volume);
      }),
  },
  { name: 'fat-walk', run: (imagePath) => withVolume(imagePath, async (volume) => walkEverything(await FAT_READER.open(volume))) },
];

export const FAT_TARGET_NAMES = FAT_TARGETS.map((target) => target.name);
