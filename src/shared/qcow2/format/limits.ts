/** Fixed limits, the same QEMU enforces (block/qcow2.h), so that hostile fields cannot size memory. */
export const QCOW2_MAGIC = 0x514649fb;
export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
/** QCOW_MAX_L1_SIZE: 32 MiB of L1 entries. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
/** QCOW_MAX_REFTABLE_SIZE: 8 MiB of refcount table. */
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
/** QCOW_MAX_SNAPSHOTS and QCOW_MAX_SNAPSHOTS_SIZE. */
export const MAX_SNAPSHOTS = 65536;
export const MAX_SNAPSHOT_TABLE_BYTES = 64 * 1024 * 1024;
/** QCOW_MAX_SNAPSHOT_EXTRA_DATA. */
export const MAX_SNAPSHOT_EXTRA_DATA = 1024;
export const MAX_BACKING_FILE_NAME = 1023;
/** Offsets in the image must stay below 2^56 (the L2 entry's offset field) and fit a JS number. */
export const MAX_HOST_OFFSET = Number.MAX_SAFE_INTEGER;
/** QEMU caps virtual size at 32 MiB of L1 with the largest clusters; we use the same 2^63 guard via L1. */
export const MAX_VIRTUAL_SIZE = 2 ** 52;
export const MAX_BACKING_CHAIN = 64;
export const SECTOR = 512;

export const INCOMPAT_DIRTY = 1n << 0n;
export const INCOMPAT_CORRUPT = 1n << 1n;
export const INCOMPAT_DATA_FILE = 1n << 2n;
export const INCOMPAT_COMPRESSION = 1n << 3n;
export const INCOMPAT_EXTL2 = 1n << 4n;
export const INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;
export const COMPAT_LAZY_REFCOUNTS = 1n << 0n;
export const AUTOCLEAR_BITMAPS = 1n << 0n;
export const AUTOCLEAR_DATA_FILE_RAW = 1n << 1n;
