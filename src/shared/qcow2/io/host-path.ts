/**
 * A path for the system's file calls. A file name read from an image (a backing file's) may hold
 * bytes that are not UTF-8, kept as escaped bytes (format/byte-string.ts); given as a string, Node
 * would encode those as replacement characters and name another, missing file. Such a path goes
 * as its bytes; every other path as it is.
 */
import { encodeByteString, holdsEscapedBytes } from '../format/byte-string.ts';

export function hostPath(filePath: string): string | Buffer {
  return holdsEscapedBytes(filePath) ? Buffer.from(encodeByteString(filePath)) : filePath;
}
