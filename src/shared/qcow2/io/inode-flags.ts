/**
 * A file's inode flags (Linux FS_IOC_GETFLAGS / FS_IOC_SETFLAGS, what lsattr and chattr show),
 * through the C library's ioctl (libc.ts): a file that replaces another keeps the ones a user sets
 * on a disk image — btrfs's No_COW above all (`chattr +C`, which VM guides and libvirt's pools set so
 * that a disk does not fragment), which must be set while the file is still empty.
 */
import { libc } from './libc.ts';

/** btrfs: no copy-on-write (and no checksums) for the data; only takes effect on an empty file. */
export const FS_NOCOW_FL = 0x0080_0000;
/** btrfs: compress the data / never compress it. */
export const FS_COMPR_FL = 0x0000_0004;
export const FS_NOCOMP_FL = 0x0000_0400;
/** Synchronous writes; no dump; no access times; ext4's data journaling (root only). */
export const FS_SYNC_FL = 0x0000_0008;
export const FS_NODUMP_FL = 0x0000_0040;
export const FS_NOATIME_FL = 0x0000_0080;
export const FS_JOURNAL_DATA_FL = 0x0000_4000;

/** Flags about how the data is stored: set on the new file before its first byte. */
export const BEFORE_DATA_FLAGS = FS_NOCOW_FL | FS_COMPR_FL | FS_NOCOMP_FL;
/**
 * Every flag a new file takes over. The rest are left as the file system set them: immutable and
 * append-only (such a disk cannot be replaced anyway), the file system's own (ext4's extents,
 * inline data, encryption, verity), and those for folders.
 */
const EACH_KEPT_FLAG = [FS_NOCOW_FL, FS_COMPR_FL, FS_NOCOMP_FL, FS_SYNC_FL, FS_NODUMP_FL, FS_NOATIME_FL, FS_JOURNAL_DATA_FL];
export const KEPT_FLAGS = EACH_KEPT_FLAG.reduce((all, flag) => all | flag, 0);

type Ioctl = (fd: number, request: number, type: string, value: Int32Array) => number;

/** The two requests for this machine's `long` (the kernel reads and writes an int either way); null where the encoding differs. */
function requests(): { get: number; set: number } | null {
  const longBytes = { x64: 8, arm64: 8, riscv64: 8, loong64: 8, s390x: 8, ia32: 4, arm: 4 }[process.arch as string];
  if (longBytes === undefined) return null;
  // _IOR('f', 1, long) and _IOW('f', 2, long) in the generic ioctl encoding.
  return { get: ((2 << 30) | (longBytes << 16) | (0x66 << 8) | 1) >>> 0, set: ((1 << 30) | (longBytes << 16) | (0x66 << 8) | 2) >>> 0 };
}

let ioctl: Ioctl | null | undefined;

function ioctlCall(): Ioctl | null {
  if (ioctl !== undefined) return ioctl;
  const loaded = libc();
  ioctl = loaded instanceof Error || requests() === null ? null : (loaded.library.func('int ioctl(int fd, unsigned long request, ...)') as unknown as Ioctl);
  return ioctl;
}

/** The open file's inode flags, or null where it has none to tell (another file system or system, a FIFO). */
export function readInodeFlags(fd: number): number | null {
  const call = ioctlCall();
  const codes = requests();
  if (call === null || codes === null) return null;
  const flags = new Int32Array(1);
  return call(fd, codes.get, 'int *', flags) === 0 ? (flags[0] as number) >>> 0 : null;
}

/**
 * Gives the open file `wanted`'s flags among `kept`, leaving its others as they are (the file
 * system's own cannot be changed, and need not be). Where the whole set is refused (data journaling
 * needs root), each flag is tried alone. Returns the flags among `wanted & kept` the file has not.
 */
export function keepInodeFlags(fd: number, wanted: number, kept: number): number {
  const call = ioctlCall();
  const codes = requests();
  const current = readInodeFlags(fd);
  if (call === null || codes === null || current === null) return (wanted & kept) >>> 0;
  const target = ((current & ~kept) | (wanted & kept)) >>> 0;
  if (target === current) return 0;
  const set = (flags: number): boolean => call(fd, codes.set, 'int *', Int32Array.of(flags | 0)) === 0;
  if (!set(target)) {
    let have = (current & ~kept) >>> 0;
    set(have);
    for (const flag of EACH_KEPT_FLAG) {
      if ((wanted & kept & flag) !== 0 && set((have | flag) >>> 0)) have = (have | flag) >>> 0;
    }
  }
  return ((wanted & kept) & ~(readInodeFlags(fd) ?? 0)) >>> 0;
}
