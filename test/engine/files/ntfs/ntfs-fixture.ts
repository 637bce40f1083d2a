/** The checked-in NTFS volume (fixtures/make-ntfs-fixture.sh says how it was made), unpacked for a test. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { GuestFilesystem } from '../../../../src/shared/qcow2/files/filesystem.ts';

export const NTFS_FIXTURE = path.join(import.meta.dirname, 'fixtures', 'ntfs-volume.img.gz');

export function unpackNtfsFixture(destination: string): string {
  fs.writeFileSync(destination, gunzipSync(fs.readFileSync(NTFS_FIXTURE)));
  return destination;
}

/** A whole file through the reader, in chunks of an odd size so reads cross cluster and run boundaries. */
export async function readWhole(filesystem: GuestFilesystem, filePath: string, size: number, chunk = 65_521): Promise<Buffer> {
  const content = Buffer.alloc(size);
  let offset = 0;
  for (;;) {
    const count = await filesystem.read(filePath, content.subarray(offset, Math.min(size, offset + chunk)), offset);
    if (count === 0) break;
    offset += count;
  }
  const tail = new Uint8Array(16);
  if ((await filesystem.read(filePath, tail, size)) !== 0) throw new Error(`${filePath} reads past its size ${size}`);
  if (offset !== size) throw new Error(`${filePath} read ${offset} of ${size} bytes`);
  return content;
}
