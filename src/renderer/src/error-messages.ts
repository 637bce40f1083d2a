/** Error codes in plain words. The engine's own message is shown beneath as detail, never parsed. */
import type { ApiErrorCode } from './lib/api-error.ts';

export interface ErrorMessage {
  /** A few words for tight places such as the sidebar. */
  short: string;
  /** One sentence saying what is wrong. */
  title: string;
  /** What the user can do about it, when there is something. */
  hint?: string;
}

const MESSAGES: Record<ApiErrorCode, ErrorMessage> = {
  BAD_MAGIC: {
    short: 'Not a qcow2 image',
    title: 'This file is not a qcow2 disk image.',
    hint: 'Cowbell opens qcow2 images only. Raw, VMDK or VDI disks can be converted with qemu-img convert.',
  },
  UNSUPPORTED_VERSION: {
    short: 'Unsupported version',
    title: 'This qcow2 image uses a version Cowbell does not know.',
    hint: 'Cowbell reads qcow2 version 2 and 3.',
  },
  UNSUPPORTED_FEATURE: {
    short: 'Unsupported feature',
    title: 'This image uses a qcow2 feature Cowbell does not support yet.',
  },
  CORRUPT: {
    short: 'Damaged image',
    title: 'This image is damaged: its metadata is inconsistent.',
    hint: 'Run a check on a copy of the image before using it.',
  },
  TRUNCATED: {
    short: 'File is cut short',
    title: 'This file ends too early to be a complete qcow2 image.',
    hint: 'It may have been cut short while it was copied or downloaded.',
  },
  NOT_FOUND: {
    short: 'File not found',
    title: 'There is no file or folder at this path.',
    hint: 'It may have been moved, renamed or deleted.',
  },
  NOT_A_FILE: {
    short: 'Not a file',
    title: 'This path is a folder or a device, not a disk image file.',
  },
  CANNOT_CREATE: {
    short: 'Cannot create the file',
    title: 'The new file could not be created in that folder.',
    hint: 'The folder is there, but its file system refused a new file (as /proc and /sys do). Choose a folder on an ordinary drive.',
  },
  PERMISSION_DENIED: {
    short: 'Permission denied',
    title: 'Cowbell is not allowed to read this file.',
    hint: 'Check the file’s permissions.',
  },
  IO_ERROR: {
    short: 'Read error',
    title: 'The file could not be read because of an input/output error.',
    hint: 'The disk or network share holding it may be failing.',
  },
  NO_SPACE: {
    short: 'Drive is full',
    title: 'There is not enough free space on the drive.',
  },
  READ_ONLY: {
    short: 'Read-only',
    title: 'This file can only be read, not changed.',
  },
  IN_USE: {
    short: 'In use by another program',
    title: 'Another program, such as a running virtual machine, is using this disk.',
    hint: 'Shut the virtual machine down to make changes.',
  },
  BAD_PASSPHRASE: {
    short: 'Wrong passphrase',
    title: 'The passphrase does not unlock this disk.',
    hint: 'Nothing was changed. Check it (and the keyboard layout) and try again.',
  },
  LOCKED: {
    short: 'Encrypted',
    title: 'This disk is encrypted: its data can be read only with its passphrase.',
    hint: 'Unlock it with its passphrase; its snapshots and space can be seen without it.',
  },
  INVALID_ARGUMENT: {
    short: 'Invalid values',
    title: 'Cowbell could not do this with the values given.',
  },
  SNAPSHOT_NOT_FOUND: {
    short: 'Snapshot not found',
    title: 'This snapshot no longer exists in the image.',
  },
  SNAPSHOT_EXISTS: {
    short: 'Snapshot exists',
    title: 'A snapshot with this name already exists.',
  },
  BACKING_NOT_FOUND: {
    short: 'Backing file missing',
    title: 'The backing file this image depends on cannot be found.',
    hint: 'Move the backing file back, or open the image next to it.',
  },
  NOTE_TOO_LONG: {
    short: 'Note too long',
    title: 'This note is longer than a snapshot can keep.',
    hint: 'Shorten it: a note holds up to 512 bytes (fewer characters where they are accented letters, other scripts or emoji).',
  },
  FOREIGN_EXTRA_DATA: {
    short: 'No room for a note',
    title: 'This snapshot carries another program’s data where Cowbell keeps its notes.',
    hint: 'Cowbell leaves that data as it is, so this snapshot cannot have a note.',
  },
  DATA_FILE_NOT_FOUND: {
    short: 'Data file missing',
    title: 'The external data file that holds this disk’s data cannot be found.',
    hint: 'A relative data file name is looked for from the folder Cowbell (like QEMU) was started in.',
  },
  DATA_PAST_END: {
    short: 'Data past the new end',
    title: 'The disk holds data past the new end, which a shrink would drop.',
    hint: 'Shrink the partition and file system inside the guest first, or choose to discard that data.',
  },
  UNSAVED_DATA: {
    short: 'New unsaved data',
    title: 'The disk was written to since the dialog showed what reverting discards: it now holds more data that is in no snapshot.',
    hint: 'Nothing was changed. Open Revert again to see what it would discard now, or take a snapshot first.',
  },
  NEEDS_VERSION_3: {
    short: 'Needs qcow2 v3',
    title: 'This disk is compat 0.10 (qcow2 version 2), and zstd compression needs compat 1.1 (version 3).',
    hint: 'Choose zstd in the Compress dialog: it upgrades the disk to compat 1.1 on the way (QEMU 1.1 and later read it). Or keep zlib.',
  },
  HAS_BITMAPS: {
    short: 'Has dirty bitmaps',
    title: 'The disk keeps persistent dirty bitmaps, which incremental backups use and a rewritten disk cannot keep.',
    hint: 'Choose to leave them behind in the dialog; the next backup of this disk will then be a full one.',
  },
  FILESYSTEM_CORRUPT: {
    short: 'Damaged file system',
    title: 'The file system inside this disk is damaged where Cowbell would read it.',
    hint: 'The disk image itself is untouched. A file system check inside the guest (fsck, chkdsk) may mend it.',
  },
  FILESYSTEM_UNSUPPORTED: {
    short: 'File system feature not read',
    title: 'This file system uses a feature Cowbell cannot read yet.',
  },
  NO_FILESYSTEM: {
    short: 'No file system',
    title: 'Cowbell finds no file system it can read here (empty, swap, LVM or an unknown kind).',
  },
  NOT_A_DIRECTORY: {
    short: 'Not a folder',
    title: 'That path names a file, not a folder.',
  },
  IS_A_DIRECTORY: {
    short: 'A folder',
    title: 'That path names a folder, not a file.',
  },
  CANCELLED: {
    short: 'Cancelled',
    title: 'The operation was cancelled; the image is as it was.',
  },
  INTERNAL: {
    short: 'Internal error',
    title: 'Something went wrong inside Cowbell.',
    hint: 'The details below may help a bug report.',
  },
  INVALID_REQUEST: {
    short: 'Request refused',
    title: 'Cowbell refused this request.',
    hint: 'A path must be absolute, for example /home/me/disk.qcow2.',
  },
  DISCONNECTED: {
    short: 'Connection lost',
    title: 'The connection to Cowbell was lost.',
    hint: 'Restart Cowbell, then reload this page.',
  },
  BAD_REPLY: {
    short: 'Unreadable reply',
    title: 'Cowbell sent an answer this window cannot read.',
    hint: 'The window and the app may be from different versions; reload the page.',
  },
};

export function errorMessage(code: ApiErrorCode): ErrorMessage {
  return MESSAGES[code];
}
