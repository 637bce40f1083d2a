/** A guest disk held in memory, and its state's files: for partition-table and filesystem tests that damage bytes. */
import type { GuestReader } from '../../src/shared/qcow2/image/guest-reader.ts';
import { stateFilesOf, type StateFiles } from '../../src/shared/qcow2/files/state-files.ts';

export function memoryReader(bytes: Uint8Array): GuestReader {
  return {
    virtualSize: bytes.length,
    readInto(buffer, guestOffset) {
      buffer.fill(0);
      buffer.set(bytes.subarray(guestOffset, guestOffset + buffer.length));
    },
    close() {},
  };
}

/** Runs `use` on the files of the guest disk `bytes`, then closes them. */
export async function withFiles<T>(bytes: Uint8Array, use: (files: StateFiles) => Promise<T>): Promise<T> {
  const files = await stateFilesOf(memoryReader(bytes));
  try {
    return await use(files);
  } finally {
    await files.close();
  }
}
