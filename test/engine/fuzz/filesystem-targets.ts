/**
 * The guest-files target: every filesystem reader in FILESYSTEM_READERS that recognises the guest
 * disk (a whole-disk filesystem) opens it and walks it as `cowbell ls -R` and `copy-out` would:
 * list each folder, stat and read each file, ask for its extents. The walk is bounded (entries,
 * depth, bytes) because a small volume can validly hold many files; a reader's own work is not.
 */
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { GuestFilesystem, VolumeBytes } from '../../../src/shared/qcow2/files/filesystem.ts';
import { FILESYSTEM_READERS } from '../../../src/shared/qcow2/files/filesystems.ts';
import { openGuestReader } from '../../../src/shared/qcow2/image/image-format.ts';

const MAX_ENTRIES = 3000;
const MAX_DEPTH = 24;
const BUDGET_BYTES = 4 * 1024 * 1024;
const CHUNK = 256 * 1024;

class WalkBudget {
  entries = MAX_ENTRIES;
  bytes = BUDGET_BYTES;
  readonly chunk = new Uint8Array(CHUNK);
}

export async function walkGuestFiles(file: string): Promise<void> {
  const reader = openGuestReader(file);
  try {
    const volume: VolumeBytes = {
      length: reader.virtualSize,
      // A reader that asks for bytes outside its volume has a bug: this is a raw error, so a finding.
      read: async (buffer, offset) => {
        if (!Number.isSafeInteger(offset) || offset < 0 || offset + buffer.length > reader.virtualSize) {
          throw new RangeError(`a filesystem reader read ${buffer.length} bytes at ${offset}, outside the ${reader.virtualSize}-byte volume`);
        }
        reader.readInto(buffer, offset);
      },
    };
    for (const filesystemReader of FILESYSTEM_READERS) {
      if (!(await filesystemReader.probe(volume))) continue;
      const filesystem = await filesystemReader.open(volume);
      try {
        await walkFolder(filesystem, '/', 0, new WalkBudget());
      } finally {
        await filesystem.close();
      }
      return;
    }
  } finally {
    reader.close();
  }
}

/** A damaged entry fails alone (as the app shows it): its typed error does not end the walk. */
async function tolerated(action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (error) {
    if (!(error instanceof Qcow2Error)) throw error;
  }
}

async function walkFolder(filesystem: GuestFilesystem, path: string, depth: number, budget: WalkBudget): Promise<void> {
  if (depth > MAX_DEPTH) return;
  const entries = await filesystem.list(path);
  for (const entry of entries) {
    if (budget.entries-- <= 0) return;
    await tolerated(() => filesystem.stat(entry.path));
    if (entry.kind === 'directory') await tolerated(() => walkFolder(filesystem, entry.path, depth + 1, budget));
    else if (entry.kind === 'file') {
      await tolerated(() => readFile(filesystem, entry.path, budget));
      if (filesystem.extents) await tolerated(() => filesystem.extents!(entry.path));
    }
  }
}

async function readFile(filesystem: GuestFilesystem, path: string, budget: WalkBudget): Promise<void> {
  const chunk = budget.chunk;
  let offset = 0;
  while (budget.bytes > 0) {
    const count = await filesystem.read(path, chunk, offset);
    if (count === 0) return;
    if (count > chunk.length) throw new Error(`read reported ${count} bytes into a ${chunk.length}-byte buffer`);
    offset += count;
    budget.bytes -= count;
  }
}
