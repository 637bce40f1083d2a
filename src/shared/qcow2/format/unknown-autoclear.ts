/**
 * Writers that change no guest data and no bitmap (a repair's refcounts and tables, a key-slot
 * change) keep the autoclear bits of the features they leave valid — the dirty bitmaps' and the raw
 * data file's — and clear every other one before their first write: the spec lets a program write
 * an image with unknown autoclear features only once it has cleared them (qcow2.txt,
 * autoclear_features), as QEMU does on every read-write open.
 */
import { serializeFixedHeader, type Header } from './header.ts';
import { AUTOCLEAR_BITMAPS, AUTOCLEAR_DATA_FILE_RAW, INCOMPAT_DATA_FILE } from './limits.ts';

/**
 * The fixed header with those bits cleared (`header` updated to match), for the caller to write and
 * flush before its first change; null when there is nothing to clear.
 */
export function headerWithoutUnknownAutoclear(header: Header): Uint8Array | null {
  if (header.version !== 3) return null;
  const rawDataFile = (header.incompatibleFeatures & INCOMPAT_DATA_FILE) !== 0n ? AUTOCLEAR_DATA_FILE_RAW : 0n;
  const kept = header.autoclearFeatures & (AUTOCLEAR_BITMAPS | rawDataFile);
  if (kept === header.autoclearFeatures) return null;
  header.autoclearFeatures = kept;
  return serializeFixedHeader(header);
}
