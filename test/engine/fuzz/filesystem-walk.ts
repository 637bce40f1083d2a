/**
 * What the fuzzer runs on a damaged guest volume (a raw file): a filesystem reader opens it and
 * walks it as `cowbell ls -R`, files-diff and `copy-out` would: list each folder, stat and read each
 * file, ask for its extents and data ranges. A damaged entry's typed error does not end the walk
 * (the app shows the others), so one case reaches more of the reader. Bounded (entries, depth,
 * bytes): a small volume can validly hold many files. A read outside the volume is a plain
 * RangeError: a finding.
 */
import { Qcow2Error } from '../../../src/shared/qcow2/errors.ts';
import type { FilesystemReader, GuestFilesystem } from '../../../src/shared/qcow2/files/filesystem.ts';
import { openRawVolume } from '../../helpers/raw-volume-bytes.ts';
import type { FuzzTarget } from './protocol.ts';

const MAX_ENTRIES = 3000;
const MAX_DEPTH = 24;
const BUDGET_BYTES = 4 * 1024 * 1024;
const CHUNK = 256 * 1024;

class WalkBudget {
  entries = MAX_ENTRIES;
  bytes = BUDGET_BYTES;
  readonly chunk = new Uint8Array(CHUNK);
}

/** A fuzz target named `name` that walks a volume through `reader` (nothing happens where its signature is gone). */
export function filesystemWalkTarget(name: string, reader: FilesystemReader): FuzzTarget {
  return {
    name,
    async run(imagePath: string): Promise<void> {
      const volume = openRawVolume(imagePath);
      try {
        if (!(await reader.probe(volume))) return;
        const filesystem = await reader.open(volume);
        try {
          await walkFolder(filesystem, '/', 0, new WalkBudget());
        } finally {
          await filesystem.close();
        }
      } finally {
        volume.close();
      }
    },
  };
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
      if (filesystem.dataRanges) await tolerated(() => filesystem.dataRanges!(entry.path));
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
