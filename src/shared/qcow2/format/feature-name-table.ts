/**
 * The feature name table header extension QEMU writes into a version 3 header (qcow2.txt "Feature
 * name table"): a name for each feature bit, so that a reader that does not know a bit can name it.
 */
import { EXT_FEATURE_TABLE, encodeString, type HeaderExtension } from './header.ts';

/** QEMU 7.2's table: [kind (0 incompatible, 1 compatible, 2 autoclear), bit, name]. */
const FEATURES: readonly (readonly [number, number, string])[] = [
  [0, 0, 'dirty bit'],
  [0, 1, 'corrupt bit'],
  [0, 2, 'external data file'],
  [0, 3, 'compression type'],
  [0, 4, 'extended L2 entries'],
  [1, 0, 'lazy refcounts'],
  [2, 0, 'bitmaps'],
  [2, 1, 'raw external data'],
];

const ENTRY_BYTES = 48;

export function featureNameTable(): HeaderExtension {
  const data = new Uint8Array(FEATURES.length * ENTRY_BYTES);
  FEATURES.forEach(([kind, bit, name], index) => {
    data[index * ENTRY_BYTES] = kind;
    data[index * ENTRY_BYTES + 1] = bit;
    data.set(encodeString(name), index * ENTRY_BYTES + 2);
  });
  return { type: EXT_FEATURE_TABLE, data };
}

/**
 * Whether QEMU gives a version 3 header with clusters of this size a feature name table: not for
 * 4 KiB or less, where its 392 bytes would leave no room for a backing file name (with 512-byte
 * clusters the header could not be written at all). Its create and its upgrade (amend) agree.
 */
export function hasRoomForFeatureNameTable(clusterBytes: number): boolean {
  return clusterBytes > 4096;
}
