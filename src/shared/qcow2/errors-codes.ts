/** Every failure the engine reports is a Qcow2Error with one of these codes. */
export const ERROR_CODES = [
  'BAD_MAGIC',
  'UNSUPPORTED_VERSION',
  'UNSUPPORTED_FEATURE',
  'CORRUPT',
  'TRUNCATED',
  'NOT_FOUND',
  'NOT_A_FILE',
  /** A new file could not be made in a folder that exists (its file system refused it: /proc, /sys). */
  'CANNOT_CREATE',
  'PERMISSION_DENIED',
  'IO_ERROR',
  'NO_SPACE',
  'READ_ONLY',
  'IN_USE',
  'BAD_PASSPHRASE',
  /** The disk is encrypted and this needs its data: unlock it with its passphrase. */
  'LOCKED',
  'INVALID_ARGUMENT',
  'SNAPSHOT_NOT_FOUND',
  'SNAPSHOT_EXISTS',
  'BACKING_NOT_FOUND',
  /** A snapshot note longer than Cowbell's record can keep (format/cowbell-record.ts). */
  'NOTE_TOO_LONG',
  /** The snapshot's extra data holds another program's bytes: Cowbell keeps them and records nothing there. */
  'FOREIGN_EXTRA_DATA',
  /** The external data file holding the image's guest clusters is missing (or not named). */
  'DATA_FILE_NOT_FOUND',
  /** A shrink would drop data the current disk holds past its new end: refused unless the caller chose to discard it. */
  'DATA_PAST_END',
  /** A revert would discard more of the current state's data in no snapshot than the caller agreed to (another program wrote since). */
  'UNSAVED_DATA',
  /** The disk keeps persistent dirty bitmaps (incremental backups), which a rewrite leaves behind only when asked to (dropBitmaps). */
  'HAS_BITMAPS',
  /** What was asked (zstd compression) needs a compat 1.1 (version 3) disk, and the request does not upgrade it (RewriteRequest.version). */
  'NEEDS_VERSION_3',
  /** A guest filesystem's bytes are damaged or hostile: Cowbell refuses to follow them (files/). */
  'FILESYSTEM_CORRUPT',
  /** A guest filesystem uses a feature Cowbell's reader does not read (e.g. NTFS compression). */
  'FILESYSTEM_UNSUPPORTED',
  /** No filesystem Cowbell reads where the path points (an empty disk, swap, LVM, an unknown filesystem). */
  'NO_FILESYSTEM',
  /** A path inside a guest filesystem names a file where a folder was needed, or a folder where a file was. */
  'NOT_A_DIRECTORY',
  'IS_A_DIRECTORY',
  'CANCELLED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}
