/**
 * What the fuzzer runs on a damaged disk holding a LUKS volume (a raw file, the volume on the
 * whole disk): the state's volumes found with the fixture volumes' passphrases (luks-disks.ts)
 * given for every encrypted one —
 * its header read, a key slot opened, the data decrypted — then every volume inside walked as
 * `cowbell ls -R` would (bounded), a damaged entry's typed error not ending the walk.
 */
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import { openStateFiles, type StateFiles } from '../../../src/shared/qcow2/files/state-files.ts';
import { LUKS_VOLUMES } from '../../helpers/luks-disks.ts';
import type { FuzzTarget } from './protocol.ts';

const MAX_ENTRIES = 2000;
const MAX_DEPTH = 16;
const READ_BYTES = 64 * 1024;

async function walk(files: StateFiles, path: string, depth: number, budget: { entries: number }): Promise<void> {
  if (depth > MAX_DEPTH) return;
  let entries;
  try {
    entries = await files.list(path);
  } catch (error) {
    if (error instanceof Qcow2Error) return;
    throw error;
  }
  for (const entry of entries) {
    if (budget.entries-- <= 0) return;
    try {
      if (entry.kind === 'directory') await walk(files, entry.path, depth + 1, budget);
      else if (entry.kind === 'file') await files.read(entry.path, new Uint8Array(Math.min(READ_BYTES, entry.size)), 0);
    } catch (error) {
      if (!(error instanceof Qcow2Error)) throw error;
    }
  }
}

export const LUKS_TARGETS: FuzzTarget[] = [
  {
    name: 'luks-walk',
    async run(imagePath: string): Promise<void> {
      const passphrases = LUKS_VOLUMES.map((volume) => ({ passphrase: new TextEncoder().encode(volume.passphrases[0]) }));
      const files = await openStateFiles(imagePath, 'current', { volumes: { passphrases } });
      try {
        await walk(files, '/', 0, { entries: MAX_ENTRIES });
      } finally {
        await files.close();
      }
    },
  },
];
