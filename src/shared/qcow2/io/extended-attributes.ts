/**
 * A file's extended attributes (Linux xattrs: POSIX ACLs as system.posix_acl_access, SELinux
 * labels, user.* and trusted.* names such as libvirt's owner records), read from one open file and
 * set on another, through the C library (Node has no call for them). A file that replaces another
 * keeps them: without its ACL, a disk's mode alone would give the owning group what the ACL's mask
 * allowed named users, and take from those users what they had.
 */
import { libc } from './libc.ts';

/** One attribute by name, with its value. */
export interface ExtendedAttribute {
  name: string;
  value: Uint8Array;
}

/** An attribute that could not be set on the new file, and why (errno's name). */
export interface AttributeNotKept {
  name: string;
  code: string;
}

interface XattrCalls {
  list(fd: number, list: Uint8Array | null, size: number): number;
  get(fd: number, name: string, value: Uint8Array | null, size: number): number;
  set(fd: number, name: string, value: Uint8Array, size: number, flags: number): number;
  errno(): number;
}

/** The POSIX ACL that gives named users and groups their rights (and whose mask is the mode's group bits). */
export const ACCESS_ACL = 'system.posix_acl_access';

const ERANGE = 34;
const ENOTSUP = 95;
const ERRNO_NAMES: Record<number, string> = { 1: 'EPERM', 13: 'EACCES', 7: 'E2BIG', 22: 'EINVAL', 28: 'ENOSPC', 30: 'EROFS', 61: 'ENODATA', 95: 'ENOTSUP', 122: 'EDQUOT' };

let calls: XattrCalls | null | undefined;

function xattrCalls(): XattrCalls | null {
  if (calls !== undefined) return calls;
  const loaded = libc();
  if (loaded instanceof Error) {
    calls = null;
    return calls;
  }
  const { koffi, library } = loaded;
  const list = library.func('long flistxattr(int fd, void *list, size_t size)') as unknown as XattrCalls['list'];
  const get = library.func('long fgetxattr(int fd, const char *name, void *value, size_t size)') as unknown as XattrCalls['get'];
  const set = library.func('int fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)') as unknown as XattrCalls['set'];
  calls = { list, get, set, errno: () => koffi.errno() };
  return calls;
}

/** Calls `read` with a buffer grown until the answer fits (another program may add to it between the two calls). */
function readSized(sizeOf: () => number, read: (buffer: Uint8Array) => number, errno: () => number): Uint8Array | null {
  for (let attempt = 0; attempt < 4; attempt++) {
    const size = sizeOf();
    if (size < 0) return null;
    if (size === 0) return new Uint8Array(0);
    const buffer = new Uint8Array(size);
    const got = read(buffer);
    if (got >= 0) return buffer.subarray(0, got);
    if (errno() !== ERANGE) return null;
  }
  return null;
}

/** Every extended attribute this process may read on an open file; [] where there are none or the system has no such calls. */
export function readExtendedAttributes(fd: number): ExtendedAttribute[] {
  const xattr = xattrCalls();
  if (xattr === null) return [];
  const list = readSized(() => xattr.list(fd, null, 0), (buffer) => xattr.list(fd, buffer, buffer.length), xattr.errno);
  if (list === null || list.length === 0) return [];
  const names = new TextDecoder().decode(list).split('\0').filter((name) => name !== '');
  const attributes: ExtendedAttribute[] = [];
  for (const name of names) {
    const value = readSized(() => xattr.get(fd, name, null, 0), (buffer) => xattr.get(fd, name, buffer, buffer.length), xattr.errno);
    // Gone since the listing, or not ours to read.
    if (value !== null) attributes.push({ name, value });
  }
  return attributes;
}

/**
 * Sets each attribute on an open file; those that could not be set and whose value the file does
 * not already hold (a label the new file got from its folder counts as kept) are returned.
 */
export function writeExtendedAttributes(fd: number, attributes: readonly ExtendedAttribute[]): AttributeNotKept[] {
  if (attributes.length === 0) return [];
  const xattr = xattrCalls();
  if (xattr === null) return attributes.map(({ name }) => ({ name, code: 'ENOTSUP' }));
  const notKept: AttributeNotKept[] = [];
  for (const { name, value } of attributes) {
    if (xattr.set(fd, name, value, value.length, 0) === 0) continue;
    const errno = xattr.errno();
    const now = readSized(() => xattr.get(fd, name, null, 0), (buffer) => xattr.get(fd, name, buffer, buffer.length), xattr.errno);
    if (now !== null && Buffer.from(now).equals(Buffer.from(value))) continue;
    notKept.push({ name, code: ERRNO_NAMES[errno] ?? (errno === ENOTSUP ? 'ENOTSUP' : `errno ${errno}`) });
  }
  return notKept;
}
