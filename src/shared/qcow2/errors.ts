import type { ErrorCode } from './errors-codes.ts';

export { ERROR_CODES, isErrorCode, type ErrorCode } from './errors-codes.ts';

export class Qcow2Error extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'Qcow2Error';
    this.code = code;
  }
}

/** What is wrong with a file's own bytes: which file is then the first thing to know. */
const FILE_FAULTS: ReadonlySet<ErrorCode> = new Set(['BAD_MAGIC', 'UNSUPPORTED_VERSION', 'UNSUPPORTED_FEATURE', 'CORRUPT', 'TRUNCATED']);

/**
 * A fault in a file's header or tables met while opening it, naming the file (as qemu-img's "Could
 * not open 'FILE'" does) unless the message already does: a command reads several files (a backing
 * chain, a convert's input and output) and "Not a qcow2 image" alone does not say which one.
 */
export function namingFile(error: unknown, filePath: string): unknown {
  // One already named (a backing file's, met while opening the overlay) keeps the name of the file at fault.
  if (!(error instanceof Qcow2Error) || !FILE_FAULTS.has(error.code) || namedErrors.has(error) || error.message.includes(filePath)) return error;
  const named = new Qcow2Error(error.code, `${filePath}: ${error.message}`, { cause: error });
  namedErrors.add(named);
  return named;
}

const namedErrors = new WeakSet<Qcow2Error>();

/**
 * A system error's name. libuv has no name for EDQUOT (a disk quota exceeded, which is a full disk
 * to its user): Node says UNKNOWN for the write, or -122 (Linux's number) for fdatasync.
 */
function systemErrorCode(error: unknown): unknown {
  const { code, errno } = (error ?? {}) as { code?: unknown; errno?: unknown };
  return errno === -EDQUOT_LINUX ? 'EDQUOT' : code;
}

const EDQUOT_LINUX = 122;

/** Node's system errors (ENOENT, ENOSPC, …) as typed engine errors; anything else is INTERNAL. */
export function toQcow2Error(error: unknown, what: string): Qcow2Error {
  if (error instanceof Qcow2Error) return error;
  const detail = error instanceof Error ? error.message : String(error);
  switch (systemErrorCode(error)) {
    case 'ENOENT':
      return new Qcow2Error('NOT_FOUND', `${what}: no such file`, { cause: error });
    case 'EEXIST':
      return new Qcow2Error('INVALID_ARGUMENT', `${what}: already exists (a file or folder of that name is in the way); choose another name`, { cause: error });
    case 'ENOTDIR':
      return new Qcow2Error('NOT_A_DIRECTORY', `${what}: a part of the path is a file, not a folder`, { cause: error });
    case 'EISDIR':
      return new Qcow2Error('NOT_A_FILE', `${what}: is a folder, not a disk image`, { cause: error });
    case 'EACCES':
    case 'EPERM':
      return new Qcow2Error('PERMISSION_DENIED', `${what}: permission denied`, { cause: error });
    case 'ENAMETOOLONG':
      return new Qcow2Error('INVALID_ARGUMENT', `${what}: the name is too long for the file system; choose a shorter one`, { cause: error });
    case 'ELOOP':
      return new Qcow2Error('INVALID_ARGUMENT', `${what}: too many levels of symbolic links (a link that points back to itself?)`, { cause: error });
    case 'EROFS':
      return new Qcow2Error('READ_ONLY', `${what}: the file system is read-only`, { cause: error });
    case 'ENOSPC':
    case 'EDQUOT':
      return new Qcow2Error('NO_SPACE', `${what}: the disk is full; free some space and try again`, { cause: error });
    case 'EFBIG':
      return new Qcow2Error('NO_SPACE', `${what}: the file would be larger than this file system allows`, { cause: error });
    case 'EIO':
      return new Qcow2Error('IO_ERROR', `${what}: input/output error (the disk or its file system failed); check the disk before trying again`, { cause: error });
    default:
      return new Qcow2Error('INTERNAL', `${what}: ${detail}`, { cause: error });
  }
}
