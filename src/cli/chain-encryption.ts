/**
 * The files of a disk's backing chain, nearest first, each with its encryption as the app's dialogs
 * count it ('luks', 'aes', or null: in the clear, which a file that cannot be read is taken to be).
 * For the notes encrypt and create print where a chain mixes encrypted and clear files.
 */
import { readImageInfo } from '../shared/qcow2/image/info.ts';
import { encryptionOf } from './passphrase-input.ts';

export interface ChainFileEncryption {
  path: string;
  encryption: 'luks' | 'aes' | null;
}

export function chainFilesBelow(imagePath: string): ChainFileEncryption[] {
  const files: ChainFileEncryption[] = [];
  const seen = new Set([imagePath]);
  for (let current = imagePath; ; ) {
    let below: unknown;
    try {
      below = readImageInfo(current, { refuseInUse: false })['full-backing-filename'];
    } catch {
      return files;
    }
    if (typeof below !== 'string' || seen.has(below)) return files;
    seen.add(below);
    let encryption: ChainFileEncryption['encryption'] = null;
    try {
      encryption = encryptionOf(below);
    } catch {
      // A file that cannot be read is no less in the clear.
    }
    files.push({ path: below, encryption });
    current = below;
  }
}
