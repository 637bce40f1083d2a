/** Free space for a new file in a folder, as an unprivileged user may use it (statfs f_bavail). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { toQcow2Error } from '../errors.ts';
import { physicalPath } from './file-identity.ts';

/** Bytes free for a file created at `filePath`; null where the platform cannot tell. */
export function freeBytesFor(filePath: string): number | null {
  // The folder the kernel reaches (a '..' after a linked folder climbs from where it leads).
  const folder = physicalPath(path.dirname(filePath));
  try {
    const stats = fs.statfsSync(folder);
    return Number(stats.bavail) * Number(stats.bsize);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ENOSYS' || code === 'ERR_FEATURE_UNAVAILABLE_ON_PLATFORM') return null;
    throw toQcow2Error(error, folder);
  }
}
